// Fills the sign-up form's hidden time zone field with the browser's IANA zone (for
// sending at the subscriber's local time). The server checks it against the IANA list.
(function () {
  var field = document.getElementById("timezone");
  try {
    if (field && window.Intl) field.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (e) { /* no zone: the field stays empty */ }
})();
