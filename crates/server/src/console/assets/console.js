// The console works without this script; it only adds confirmations and copy buttons.
'use strict';

// Forms with data-confirm ask before submitting (deleting an organization, revoking a key).
document.querySelectorAll('form[data-confirm]').forEach((form) => {
  form.addEventListener('submit', (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
});

// A button with data-copy copies the text of the element it names.
document.querySelectorAll('button[data-copy]').forEach((button) => {
  button.hidden = false;
  button.addEventListener('click', async () => {
    const source = document.getElementById(button.dataset.copy);
    if (!source || !navigator.clipboard) return;
    await navigator.clipboard.writeText(source.textContent);
    button.textContent = 'Copied';
  });
});
