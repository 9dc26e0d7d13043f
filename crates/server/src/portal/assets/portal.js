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

// The events page, when it shows the newest events, follows new ones as they are appended
// (Server-Sent Events from /portal/events/stream, with the page's filters): each arrives as a
// new first row. Without this script the page is the same, only still.
const liveTable = document.querySelector('table.events[data-live]');
if (liveTable && 'EventSource' in window) {
  const body = liveTable.tBodies[0];
  const text = (value) => (typeof value === 'string' ? value : '');
  const cell = (row, ...children) => {
    const td = row.insertCell();
    td.append(...children);
    return td;
  };
  const muted = (value) => {
    const span = document.createElement('span');
    span.className = 'muted';
    span.textContent = value;
    return span;
  };
  const source = new EventSource(liveTable.dataset.live);
  // data-live-state says whether new events are being followed (open) or not (reconnecting).
  source.addEventListener('open', () => {
    liveTable.dataset.liveState = 'open';
  });
  source.addEventListener('error', () => {
    liveTable.dataset.liveState = 'connecting';
  });
  source.addEventListener('message', (message) => {
    const event = JSON.parse(message.data);
    const row = body.insertRow(0);
    row.className = 'arrived';
    const link = document.createElement('a');
    link.href = `/portal/events/${encodeURIComponent(event.id)}`;
    link.textContent = message.lastEventId;
    cell(row, link);
    cell(row, text(event.occurred_at));
    const action = document.createElement('code');
    action.textContent = text(event.action);
    cell(row, action);
    const actor = event.actor || {};
    if (actor.name) cell(row, `${text(actor.name)} `, muted(text(actor.id)));
    else cell(row, text(actor.id));
    cell(
      row,
      (event.targets || [])
        .map((target) => `${text(target.type)}:${text(target.name) || text(target.id)}`)
        .join(', '),
    );
    cell(row, text((event.context || {}).location));
    liveTable.hidden = false;
    const empty = document.querySelector('p.empty');
    if (empty) empty.remove();
  });
}
