// After a passkey is set up (django-otp-webauthn's otp_webauthn.register_complete event), go on to
// the first recovery codes: a POST, since they are made then (idp.pages.factors, which goes
// straight on to `next` when the user already has codes). Registering signed the user in, which
// rotated the CSRF token: the answer carries the new one.
document.addEventListener("otp_webauthn.register_complete", (event) => {
  const answer = (event.detail && event.detail.response) || {};
  const form = document.getElementById("passkey-first-codes-form");
  if (!form) {
    if (answer.redirect_url) window.location.assign(answer.redirect_url);
    return;
  }
  if (answer.csrf_token) form.elements.namedItem("csrfmiddlewaretoken").value = answer.csrf_token;
  form.submit();
});
