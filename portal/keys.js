/* keys.js -- the subscriptions page's "Show" and "Copy" buttons.
 *
 * The page works without it (a "Show keys" form per subscription posts to
 * /subscriptions/{id}/show).  With it, a key is fetched when asked for
 * (GET /api/subscriptions/{id}/keys with the session's CSRF token in
 * X-CSRF-Token), shown in place, and can be copied or masked again.  Keys
 * are written with textContent only. */
(function () {
  'use strict';
  var table = document.getElementById('subscriptions');
  if (!table) {
    return;
  }
  var csrf = table.getAttribute('data-csrf') || '';
  var MASK = '\u2022\u2022\u2022\u2022\u2022\u2022\u2022\u2022\u2022\u2022\u2022\u2022';

  function each(sel, fn) {
    Array.prototype.forEach.call(table.querySelectorAll(sel), fn);
  }
  /* the buttons replace the forms */
  each('.show-form', function (f) { f.hidden = true; });
  each('.show-key', function (b) { b.hidden = false; });

  function codeOf(row, which) {
    return row.querySelector('code.key[data-key="' + which + '"]');
  }

  function say(row, text) {
    var out = row.querySelector('.key-status');
    if (!out) {
      out = document.createElement('p');
      out.className = 'key-status';
      out.setAttribute('role', 'status');
      row.querySelector('td.actions').appendChild(out);
    }
    out.textContent = text;
  }

  function reveal(row, which, button) {
    var id = row.getAttribute('data-subscription');
    fetch('/api/subscriptions/' + encodeURIComponent(id) + '/keys', {
      credentials: 'same-origin',
      headers: { 'X-CSRF-Token': csrf, 'Accept': 'application/json' }
    }).then(function (res) {
      return res.json().then(function (body) { return { ok: res.ok, body: body }; });
    }).then(function (r) {
      if (!r.ok) {
        say(row, (r.body && r.body.error && r.body.error.message) || 'The key cannot be shown.');
        return;
      }
      var code = codeOf(row, which);
      code.textContent = which === 'primary' ? r.body.primaryKey : r.body.secondaryKey;
      code.classList.add('shown');
      button.textContent = 'Hide';
      button.setAttribute('aria-label', 'Hide the ' + which + ' key');
      var copy = row.querySelector('.copy-key[data-key="' + which + '"]');
      if (copy && navigator.clipboard) {
        copy.hidden = false;
      }
    }).catch(function () {
      say(row, 'The key cannot be shown: the portal did not answer.');
    });
  }

  table.addEventListener('click', function (ev) {
    var button = ev.target.closest ? ev.target.closest('button') : null;
    if (!button) {
      return;
    }
    var row = button.closest('tr[data-subscription]');
    var which = button.getAttribute('data-key');
    if (!row || !which) {
      return;
    }
    if (button.classList.contains('show-key')) {
      var code = codeOf(row, which);
      if (code.classList.contains('shown')) {
        code.textContent = MASK;
        code.classList.remove('shown');
        button.textContent = 'Show';
        button.setAttribute('aria-label', 'Show the ' + which + ' key');
        var c = row.querySelector('.copy-key[data-key="' + which + '"]');
        if (c) {
          c.hidden = true;
        }
      } else {
        reveal(row, which, button);
      }
    } else if (button.classList.contains('copy-key')) {
      navigator.clipboard.writeText(codeOf(row, which).textContent).then(function () {
        say(row, 'The ' + which + ' key was copied.');
      }, function () {
        say(row, 'The key could not be copied; select it and copy it by hand.');
      });
    }
  });
})();
