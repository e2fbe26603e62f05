/* auth.js: filled in by the console work */
