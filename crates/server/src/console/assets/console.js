// The console works without this script; it only adds confirmations, copy buttons and the
// live view of an organization's events.
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

// An organization's events, when the page shows the newest, follow new ones as they are
// appended (Server-Sent Events from the table's data-live URL, with the page's filters): each
// arrives as a new first row. Without this script the page is the same, only still.
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
  source.addEventListener('message', (message) => {
    const event = JSON.parse(message.data);
    const row = body.insertRow(0);
    row.className = 'arrived';
    cell(row, message.lastEventId);
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
    const empty = liveTable.closest('section').querySelector('p.empty');
    if (empty) empty.remove();
  });
}
