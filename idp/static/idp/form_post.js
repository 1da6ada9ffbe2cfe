// OAuth 2.0 Form Post Response Mode: send the authorization response on to the client at once.
document.getElementById("form-post").submit();
