/* console.js -- the interactive console on an operation's page.
 *
 * Drives <form id="console">: its fields method, path (after the API's URL
 * suffix; the form's data-api names the API), headers ("Name: value" per
 * line), body, subscription (filled from GET /api/subscriptions?api=) and
 * key.  The call goes to the
 * portal's relay (POST /api/console, JSON, X-CSRF-Token), which fills in the
 * subscription's key and sends the call to the gateway, so the browser never
 * holds the key and no CORS is needed.  The gateway's real response (status,
 * headers, body, time) is shown under the form; everything is written with
 * textContent. */
(function () {
  'use strict';
  var form = document.getElementById('console');
  if (!form) {
    return;
  }

  function field(name) {
    return form.elements.namedItem(name);
  }
  function value(name, def) {
    var f = field(name);
    return f && f.value !== undefined && f.value !== '' ? f.value : def;
  }
  function csrfToken() {
    var f = field('csrf');
    if (f && f.value) {
      return f.value;
    }
    var m = document.querySelector('meta[name="csrf-token"]');
    return (m && m.getAttribute('content')) || form.getAttribute('data-csrf') || '';
  }

  /* "Name: value" lines into [[name, value], ...]; blank lines skipped */
  function parseHeaders(text) {
    var out = [];
    (text || '').split(/\r?\n/).forEach(function (line) {
      if (!line.trim()) {
        return;
      }
      var i = line.indexOf(':');
      if (i <= 0) {
        throw new Error('A header line needs "Name: value": ' + line);
      }
      out.push([line.slice(0, i).trim(), line.slice(i + 1).trim()]);
    });
    return out;
  }

  function output() {
    var out = document.getElementById('console-response');
    if (!out) {
      out = document.createElement('section');
      out.id = 'console-response';
      out.setAttribute('aria-live', 'polite');
      form.parentNode.insertBefore(out, form.nextSibling);
    }
    while (out.firstChild) {
      out.removeChild(out.firstChild);
    }
    return out;
  }

  function add(parent, tag, text, cls) {
    var el = document.createElement(tag);
    if (text !== undefined) {
      el.textContent = text;
    }
    if (cls) {
      el.className = cls;
    }
    parent.appendChild(el);
    return el;
  }

  function pretty(body, headers) {
    var json = headers.some(function (h) {
      return h[0].toLowerCase() === 'content-type' && /json/i.test(h[1]);
    });
    if (json) {
      try {
        return JSON.stringify(JSON.parse(body), null, 2);
      } catch (e) { /* shown as it came */ }
    }
    return body;
  }

  function show(res) {
    var out = output();
    add(out, 'h3', 'Response');
    var st = add(out, 'p', '', 'console-status');
    add(st, 'strong', String(res.status), 'status status-' + String(res.status).charAt(0));
    st.appendChild(document.createTextNode(' in ' + Math.round(res.timeMs) + ' ms'));
    add(out, 'h4', 'Headers');
    scrollable(add(out, 'pre', res.headers.map(function (h) { return h[0] + ': ' + h[1]; }).join('\n'),
                   'console-headers'), 'Response headers');
    add(out, 'h4', 'Body');
    scrollable(add(out, 'pre', pretty(res.body, res.headers), 'console-body'), 'Response body');
  }

  /* A block that may scroll is reachable from the keyboard and named for screen readers. */
  function scrollable(el, name) {
    el.setAttribute('tabindex', '0');
    el.setAttribute('role', 'region');
    el.setAttribute('aria-label', name);
    return el;
  }

  function fail(text) {
    var out = output();
    add(out, 'p', text, 'error').setAttribute('role', 'alert');
  }

  /* the subscription select: the user's subscriptions that open this API */
  function fillSubscriptions() {
    var select = field('subscription');
    if (!select || select.tagName !== 'SELECT' || select.options.length > 0) {
      return;
    }
    var api = form.getAttribute('data-api') || '';
    fetch('/api/subscriptions' + (api ? '?api=' + encodeURIComponent(api) : ''), {
      credentials: 'same-origin',
      headers: { 'Accept': 'application/json' }
    }).then(function (res) { return res.json(); }).then(function (body) {
      var list = (body && body.value) || [];
      list.forEach(function (s) {
        var o = document.createElement('option');
        o.value = s.id;
        o.textContent = s.name + (s.state !== 'active' ? ' (' + s.state + ')' : '');
        select.appendChild(o);
      });
      if (!list.length) {
        var out = output();
        var p = add(out, 'p', 'You have no subscription to a product with this API yet: ');
        var a = add(p, 'a', 'see the products');
        a.href = '/products';
      }
    }).catch(function () { /* the select stays empty; sending says why */ });
  }
  fillSubscriptions();

  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var headers;
    try {
      headers = parseHeaders(value('headers', ''));
    } catch (e) {
      fail(e.message);
      return;
    }
    var req = {
      subscription: value('subscription', ''),
      key: value('key', 'primary'),
      method: value('method', 'GET').toUpperCase(),
      path: value('path', '/'),
      headers: headers,
      body: value('body', '')
    };
    /* with the API named, the path is after its URL suffix (as the form shows it) */
    var api = value('api', '') || form.getAttribute('data-api');
    if (api) {
      req.api = api;
    }
    var button = form.querySelector('button[type="submit"], input[type="submit"]');
    if (button) {
      button.disabled = true;
    }
    var out = output();
    add(out, 'p', 'Calling\u2026', 'console-waiting');
    fetch('/api/console', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrfToken(), 'Accept': 'application/json' },
      body: JSON.stringify(req)
    }).then(function (res) {
      return res.json().then(function (body) { return { ok: res.ok, body: body }; });
    }).then(function (r) {
      if (r.ok) {
        show(r.body);
      } else {
        fail((r.body && r.body.error && r.body.error.message) || 'The console could not make the call.');
      }
    }).catch(function () {
      fail('The portal did not answer.');
    }).then(function () {
      if (button) {
        button.disabled = false;
      }
    });
  });
})();
