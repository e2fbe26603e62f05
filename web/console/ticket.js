/* ticket.js: filled in by the console work */
