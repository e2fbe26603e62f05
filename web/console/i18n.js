/* i18n.js: filled in by the console work */
