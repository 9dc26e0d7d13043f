// The portal works without this script; it only adds confirmations and live stream health.
'use strict';

// Forms with data-confirm ask before submitting (deleting a stream).
document.querySelectorAll('form[data-confirm]').forEach((form) => {
  form.addEventListener('submit', (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
});

// On a phone, the filters start folded unless some are in use, so the events come first.
const filters = document.querySelector('form.filters details');
if (filters && !('active' in filters.dataset) && window.matchMedia('(max-width: 40rem)').matches) {
  filters.open = false;
}

// An element with data-reload="N" reloads the page every N seconds, unless the user is typing.
const live = document.querySelector('[data-reload]');
if (live) {
  const seconds = Number(live.dataset.reload) || 5;
  setInterval(() => {
    const typing = Array.from(document.querySelectorAll('input:not([type=hidden])')).some(
      (input) => input === document.activeElement || input.value !== '',
    );
    if (!typing) window.location.reload();
  }, seconds * 1000);
}
