document.getElementById("app").textContent = "Helpdesk";
