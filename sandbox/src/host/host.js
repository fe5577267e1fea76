//! The local Kommo's page script: builds Kommo's widget object around the archive's script.js and drives its callbacks.
//
// What tests read: window.__sandbox = {calls, results, thrown, lastSave, saving, ready, loadError, widget, tokenAs,
// install, providerCall, lastProviderCall, navigations}.
// - calls: callback names in the order they were called; results: what render/init/bind_actions returned.
// - lastSave: {seq, active, result} of the last onSave; saving: true while one is pending.
// - tokenAs: {account_id?, user_id?, subdomain?, is_admin?, omit_is_admin?}: who the next disposable tokens speak
//   for and what they claim (POST /sandbox/token); the page's ?account, ?user and ?is_admin_claim set it.
// - install: {requested, status, connection, done}: the install request the page had the Kommo stand-in send
//   before loading the widget, the server's answer, and the last connection state the server reported.
// - navigations: the Kommo paths opened through Kommo's links (`/contacts/detail/7`), oldest first.
// - kommoCalls: what the widget gave Kommo's APP.notifications.add_call, oldest first.
// - kommoMessages: Kommo's transient messages the widget showed, oldest first: {kind, header, text, at} with kind
//   'message' (show_message), 'error' (show_message_error), 'notification' (show_notification) or 'add_error'.
// - actions: the numbers (and emails) clicked where the widget registered self.add_action: {type, value}.
// - view: the page's view ('card', 'contacts', 'companies', 'leads'); showView(view) switches it like Kommo's
//   left menu (no reload, no callback) and resolves once a list's rows are shown.
// - list: {view, loaded, rows: [{id, type}], selected: [ids in the rows' order]} of the list shown, else null.
// - providerWebhook: {account_id, webhook_url} once the page told the VoIP provider stand-in where to post its
//   originated calls (PUT /sandbox/voip/accounts/{id}/webhook), from the settings' webhook URL and secret.
(function () {
  'use strict';

  var boot = JSON.parse(document.getElementById('sandbox-boot').textContent);
  var strings = boot.strings;
  var recorder = window.__sandbox = {
    calls: [], results: {}, thrown: [], lastSave: null, saving: false, saves: 0, kommoCalls: [], kommoMessages: [],
    actions: [], view: boot.view || 'card', list: null, providerWebhook: null,
    ready: false, loadError: null, widget: null,
    // Tokens speak for the account and user the page shows (?account=<id>, ?user=<id>, ?is_admin_claim=).
    tokenAs: boot.token_as || { account_id: boot.account.id }
  };

  // The page's views: the lead card (in the area the page was opened with) and Kommo's lists, each list in its
  // area (contacts and companies: clist, leads: llist), with its base entity and the type of its rows.
  var LISTS = {
    contacts: { area: 'clist', entity: 'contacts', type: 'contact', title: 'Contacts' },
    companies: { area: 'clist', entity: 'companies', type: 'company', title: 'Companies' },
    leads: { area: 'llist', entity: 'leads', type: 'lead', title: 'Leads' }
  };
  var CARD_ENTITIES = { lcard: 'leads', ccard: 'contacts', comcard: 'companies' };
  var cardArea = recorder.view === 'card' ? boot.area : 'lcard';
  var current = { view: recorder.view, area: boot.area };

  // The slice of Kommo's APP global widgets commonly touch.
  window.APP = {
    lang_id: boot.lang,
    constant: function (name) {
      return { account: boot.account, user: boot.user, managers: {}, groups: {} }[name];
    },
    widgets: { system: { area: current.area } },
    getBaseEntity: function () {
      return current.view === 'card' ? (CARD_ENTITIES[current.area] || 'leads') : LISTS[current.view].entity;
    },
    isCard: function () { return /card$/.test(current.area); },
    // The lead the page shows: the demo account's sample lead, else a placeholder id; none on a list.
    data: {
      current_card: current.view === 'card' ? { id: boot.card_id || 1 } : null,
      current_view: null,
      current_list: null
    },
    // Kommo's own notifications: add_call shows a call at the bottom left (KOMMO.md 6.1); here each one is
    // recorded in window.__sandbox.kommoCalls and shown as a plain box. The transient messages show top right
    // for a few seconds and are recorded in window.__sandbox.kommoMessages.
    notifications: {
      add_call: function (notice) {
        recorder.kommoCalls.push(JSON.parse(JSON.stringify(notice)));
        var box = document.createElement('div');
        box.className = 'sandbox-kommo-call';
        box.innerHTML = '<b></b><div></div>';
        box.firstChild.textContent = String(notice.header || '');
        box.lastChild.innerHTML = String(notice.text || '');
        document.body.appendChild(box);
      },
      show_message: function (message) { showMessage('message', message); },
      show_message_error: function (message) { showMessage('error', message); },
      show_notification: function (notice) {
        var text = (notice && notice.text) || {};
        showMessage(notice && notice.type === 'error' ? 'error' : 'notification', text);
      },
      add_error: function (message) { showMessage('add_error', message); }
    }
  };

  // How long a transient message stays, like Kommo's.
  var MESSAGE_MS = 6000;

  // One transient message: recorded, then shown top right until it times out (clicks go through it).
  function showMessage(kind, message) {
    message = message || {};
    var record = { kind: kind, header: String(message.header || ''), text: String(message.text || ''), at: Date.now() };
    recorder.kommoMessages.push(record);
    var box = document.createElement('div');
    box.className = 'sandbox-kommo-message' + (kind === 'message' || kind === 'notification' ? '' : ' sandbox-kommo-message_error');
    box.setAttribute('data-kind', kind);
    box.setAttribute('role', kind === 'message' || kind === 'notification' ? 'status' : 'alert');
    box.innerHTML = '<div class="sandbox-kommo-message__header"></div><div class="sandbox-kommo-message__text"></div>';
    box.firstChild.textContent = record.header;
    box.lastChild.innerHTML = record.text;
    setTimeout(function () { if (box.parentNode) box.parentNode.removeChild(box); }, MESSAGE_MS);
    (document.getElementById('sandbox-kommo-messages') || document.body).appendChild(box);
  }

  // Kommo's self.add_action('phone' | 'email', handler): the numbers (emails) on the page become links that call
  // the handler with {value: the number as shown}; without a handler they are plain text.
  var actionHandlers = {};

  function refreshActions(root) {
    Array.prototype.forEach.call((root || document).querySelectorAll('a[data-action]'), function (link) {
      var on = typeof actionHandlers[link.getAttribute('data-action')] === 'function';
      link.classList.toggle('sandbox-action_on', on);
      if (on) link.setAttribute('href', '#'); else link.removeAttribute('href');
    });
  }

  document.addEventListener('click', function (event) {
    var link = event.target && event.target.closest ? event.target.closest('a[data-action]') : null;
    if (!link) return;
    var type = link.getAttribute('data-action');
    var handler = actionHandlers[type];
    if (typeof handler !== 'function') return;
    event.preventDefault();
    var value = link.getAttribute('data-value');
    recorder.actions.push({ type: type, value: value });
    try {
      handler.call(recorder.widget, { value: value });
    } catch (error) {
      recorder.thrown.push('add_action ' + type + ': ' + error);
      setTimeout(function () { throw error; });
    }
  });

  requirejs.config({ paths: { jquery: '/vendor/jquery' } });

  // Kommo's helpers; the widget constructor's prototype chain ends here, so `this.params`,
  // `self.get_settings()` and friends work inside CustomWidget as on Kommo.
  function kommoHelpers($) {
    var settings = $.extend({}, boot.settings);
    var helpers = {
      params: $.extend({
        path: location.origin + '/widget',
        widget_code: boot.widget.code,
        version: boot.widget.version,
        status: 'installed'
      }, settings),
      langs: boot.langs,
      get_settings: function () { return settings; },
      set_settings: function (update) {
        $.extend(settings, update);
        $.extend(helpers.params, update);
      },
      get_version: function () { return boot.widget.version; },
      get_install_status: function () { return 'installed'; },
      set_status: function () {},
      i18n: function (section) { return this.langs[section]; },
      set_lang: function (langs) { this.langs = langs; },
      system: function () {
        return {
          area: current.area,
          subdomain: boot.account.subdomain,
          amouser_id: boot.user.id,
          amouser: boot.user.login,
          amohash: 'sandbox',
          domain: 'kommo.com',
          lang: boot.lang
        };
      },
      $authorizedAjax: function (options) { return authorizedAjax($, options); },
      add_action: function (type, handler) {
        if (typeof handler !== 'function') return;
        actionHandlers[String(type)] = handler;
        refreshActions();
      },
      // Kommo's Lists SDK: the rows selected in the list shown, in the list's order.
      list_selected: function () {
        var selected = list.rows.filter(function (row) { return list.selected[row.id]; }).map(function (row) {
          return { id: row.id, type: row.type, phones: (row.phones || []).slice(), emails: (row.emails || []).slice() };
        });
        return { count_selected: selected.length, selected: selected };
      }
    };
    return helpers;
  }

  // Like Kommo's: fetch a fresh disposable JWT, then $.ajax with X-Auth-Token; returns a jQuery promise
  // that settles with $.ajax's arguments ((data, textStatus, jqXHR) or (jqXHR, textStatus, error)).
  function authorizedAjax($, options) {
    var deferred = $.Deferred();
    $.ajax({
      url: '/sandbox/token',
      type: 'POST',
      contentType: 'application/json',
      data: JSON.stringify(recorder.tokenAs || {}),
      dataType: 'json'
    }).done(function (minted) {
      var request = $.extend({}, options);
      request.headers = $.extend({}, options.headers, { 'X-Auth-Token': minted.token });
      $.ajax(request).done(deferred.resolve).fail(deferred.reject);
    }).fail(deferred.reject);
    return deferred.promise();
  }

  // Kommo installs a widget before loading it: its server-to-server install request carries an
  // authorization code, which the server exchanges in the background. So: ask the Kommo stand-in to send
  // that request unless the account already holds a live grant, then wait (at most ~5 s) until the server
  // reports the account installed. A server without GET /widget/v1/connection (404), or one that refused
  // the install request, is not waited for. Never rejects.
  var INSTALL_WAIT_MS = 5000;
  function ensureInstalled($) {
    var install = boot.install || {};
    var report = recorder.install = { requested: false, status: null, connection: null, done: false };
    var sent = install.installed ? Promise.resolve(true) : fetch('/sandbox/kommo/install', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ account_id: boot.account.id })
    }).then(function (response) {
      report.requested = true;
      return response.json().then(function (answer) {
        report.status = response.ok ? answer.status : response.status;
        return response.ok && answer.status >= 200 && answer.status < 300;
      });
    }).catch(function (error) {
      report.error = String(error);
      return false;
    });
    return sent.then(function (accepted) {
      if (!accepted || !install.connection_url) return undefined;
      var deadline = Date.now() + INSTALL_WAIT_MS;
      return new Promise(function (resolve) {
        function again() {
          if (Date.now() >= deadline) resolve(); else setTimeout(poll, 150);
        }
        function poll() {
          authorizedAjax($, { url: install.connection_url, type: 'GET', dataType: 'json' })
            .done(function (body) {
              report.connection = body && body.state;
              if (report.connection === 'installed') resolve(); else again();
            })
            .fail(function (jqXHR) {
              report.connection = 'HTTP ' + (jqXHR && jqXHR.status);
              if (jqXHR && jqXHR.status === 404) resolve(); else again();
            });
        }
        poll();
      });
    }).then(function () { report.done = true; });
  }

  // Calls one callback as Kommo does; an exception is recorded and then surfaces as an uncaught page error.
  function call(widget, name, args) {
    recorder.calls.push(name);
    showCalls();
    try {
      // `contacts.selected` and the like are nested.
      var callback = name.split('.').reduce(function (node, key) { return node && node[key]; }, widget.callbacks);
      if (typeof callback !== 'function') {
        recorder.results[name] = 'missing';
        return undefined;
      }
      var result = callback.apply(widget, args || []);
      recorder.results[name] = (result !== null && typeof result === 'object') ? 'object' : result;
      return result;
    } catch (error) {
      recorder.thrown.push(name + ': ' + error);
      setTimeout(function () { throw error; });
      return undefined;
    }
  }

  function showCalls() {
    var log = document.getElementById('sandbox-calls');
    if (log) log.textContent = recorder.calls.join(' → ');
  }

  // onSave may answer a boolean, a Promise or a jQuery Deferred; a rejection counts as false.
  function settle(value) {
    return Promise.resolve(value).then(function (ok) { return ok === true; }, function () { return false; });
  }

  function text(s) {
    return String(s).replace(/[&<>"]/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c];
    });
  }

  // The webhook URL the widget last showed in its settings (an input's value or a text node).
  function shownWebhookUrl($) {
    var $shown = $('.kvoip-webhook-url').first();
    if (!$shown.length) return '';
    return ($shown.is('input, textarea') ? $shown.val() : $shown.text()).trim();
  }

  // The webhook URL and the signing secret the settings show, when they show both; the call panel takes them.
  function shownWebhook($) {
    var url = shownWebhookUrl($);
    // The signing secret is shown in full only right after it was issued or revealed.
    var secret = String($('input.kvoip-webhook-secret').val() || '').trim();
    if (url) $('#sandbox-call-webhook').val(url);
    if (secret.indexOf('whsec_') === 0) $('#sandbox-call-secret').val(secret);
    return url && secret.indexOf('whsec_') === 0 ? { url: url, secret: secret } : null;
  }

  // Which provider account the open settings sign in as: its login or OAuth client, when the form shows one.
  function providerInForm() {
    var value = function (name) {
      var input = document.querySelector('.kvoip-settings input[name="' + name + '"]');
      return input ? String(input.value || '').trim() : '';
    };
    var method = document.querySelector('.kvoip-settings input[name="credentials.method"]:checked');
    var kind = method ? method.value : '';
    if (kind === 'password') return { login: value('credentials.login') };
    if (kind === 'oauth2') return { client_id: value('credentials.client_id') };
    return {};
  }

  // Tells the VoIP provider stand-in where its account posts the calls it originates (click-to-call, call lists):
  // the account the settings sign in as, else the configured one. Resolves true once wired.
  var wiring = { key: null };
  function wireProvider(url, secret, who) {
    url = String(url || '').trim();
    secret = String(secret || '').trim();
    if (!/^https?:\/\//.test(url) || secret.indexOf('whsec_') !== 0) return Promise.resolve(false);
    who = who || providerInForm();
    return fetch('/sandbox/voip/accounts').then(function (response) { return response.json(); }).then(function (accounts) {
      var match = (accounts || []).filter(function (account) {
        return (who.login && account.login === who.login) || (who.client_id && account.client_id === who.client_id);
      })[0];
      var id = match ? match.account_id : boot.provider.account_id;
      var key = [id, url, secret].join(' ');
      if (key === wiring.key) return true;
      return fetch('/sandbox/voip/accounts/' + encodeURIComponent(id) + '/webhook', {
        method: 'PUT',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ webhook_url: url, secret: secret })
      }).then(function (response) {
        if (!response.ok) return false;
        wiring.key = key;
        recorder.providerWebhook = { account_id: id, webhook_url: url };
        var line = document.getElementById('sandbox-provider-wired');
        line.textContent = 'Click-to-call: provider account ' + id + ' plays its calls into ' + url;
        line.setAttribute('data-wired', 'true');
        return true;
      });
    }).catch(function () { return false; });
  }

  function wireShown($) {
    var shown = shownWebhook($);
    return shown ? wireProvider(shown.url, shown.secret) : Promise.resolve(false);
  }

  // The demo account's admin, whose settings were saved before this local Kommo started (its provider stand-in
  // forgot where to post): the page asks the server for the webhook again, as the admin's reveal action does.
  function rewireDemo($) {
    if (!boot.demo || !boot.provider || boot.provider.webhook || boot.user.is_admin !== 'Y' || !boot.reveal_url) return;
    authorizedAjax($, { url: boot.reveal_url, type: 'POST', dataType: 'json' }).done(function (endpoint) {
      if (!endpoint || !endpoint.url || !endpoint.signing_secret) return;
      if (!field('sandbox-call-webhook')) byId('sandbox-call-webhook').value = endpoint.url;
      if (!field('sandbox-call-secret')) byId('sandbox-call-secret').value = endpoint.signing_secret;
      wireProvider(endpoint.url, endpoint.signing_secret, {});
    });
  }

  function start($, Widget) {
    Object.setPrototypeOf(Widget.prototype, kommoHelpers($));
    var widget = new Widget();
    recorder.widget = widget;
    var $modal = null;
    var observer = null;

    function closeModal() {
      if (!$modal) return;
      if (observer) observer.disconnect();
      observer = null;
      // Read while the settings form is still there.
      wireShown($);
      $modal.remove();
      $modal = null;
    }

    // While the modal is open, a webhook URL and secret it shows (a first save, a reveal) wire the provider.
    function watchModal() {
      if (typeof MutationObserver !== 'function') return;
      var timer = null;
      observer = new MutationObserver(function () {
        clearTimeout(timer);
        timer = setTimeout(function () { if ($modal) wireShown($); }, 150);
      });
      observer.observe($modal[0], { childList: true, subtree: true });
    }

    function openSettings() {
      closeModal();
      var logo = boot.widget.logo ? '<img class="sandbox-modal__logo" alt="" src="' + text(boot.widget.logo) + '">' : '';
      $modal = $(
        '<div class="modal sandbox-modal" role="dialog" aria-modal="true">' +
          '<div class="modal-overlay"></div>' +
          '<div class="modal-scroller">' +
            '<div class="modal-body">' +
              '<div class="sandbox-modal__head">' + logo +
                '<div><h2 class="sandbox-modal__title">' + text(boot.widget.name) + '</h2>' +
                '<p class="sandbox-modal__desc">' + text(boot.widget.short_description) + '</p></div>' +
                '<button type="button" class="sandbox-modal__close" aria-label="' + text(strings.cancel) + '">×</button>' +
              '</div>' +
              '<div class="sandbox-modal__footer">' +
                '<label class="sandbox-modal__active"><input type="checkbox" name="sandbox_active" checked> ' +
                  text(strings.active) + '</label>' +
                '<button type="button" class="sandbox-button sandbox-button_blue sandbox-modal__save">' + text(strings.save) + '</button>' +
                '<button type="button" class="sandbox-button sandbox-modal__cancel">' + text(strings.cancel) + '</button>' +
                '<button type="button" class="sandbox-button sandbox-button_danger sandbox-modal__disable">' + text(strings.disable) + '</button>' +
              '</div>' +
            '</div>' +
          '</div>' +
        '</div>'
      ).appendTo(document.body);
      $modal.find('.sandbox-modal__close, .sandbox-modal__cancel, .modal-overlay').on('click', closeModal);
      $modal.find('.sandbox-modal__save').on('click', save);
      // Kommo's disable button sits in the widget's settings modal.
      $modal.find('.sandbox-modal__disable').on('click', disable);
      watchModal();
      call(widget, 'settings', [$modal]);
    }

    function save() {
      if (recorder.saving || !$modal) return;
      var $shownModal = $modal;
      var active = $modal.find('input[name=sandbox_active]').prop('checked') ? 'Y' : 'N';
      var seq = ++recorder.saves;
      recorder.saving = true;
      $modal.find('.sandbox-modal__save').prop('disabled', true);
      $('#sandbox-save-result').text('…');
      settle(call(widget, 'onSave', [{ active: active, fields: widget.get_settings() }])).then(function (ok) {
        recorder.lastSave = { seq: seq, active: active, result: ok };
        $('#sandbox-save-result').text(String(ok));
        $shownModal.find('.sandbox-modal__save').prop('disabled', false);
        // Kommo keeps the modal open on a refused save and may close it on success (KOMMO.md does not say):
        // the page does, unless ?keep_modal=1, so what only the save's answer showed is gone with it.
        if (ok) {
          widget.set_settings({ active: active });
          if ($modal === $shownModal && !boot.keep_modal) closeModal();
          else setTimeout(function () { if ($modal === $shownModal) wireShown($); }, 200);
        }
        recorder.saving = false;
      });
    }

    function disable() {
      if (recorder.disabled) return;
      settle(call(widget, 'onSave', [{ active: 'N', fields: widget.get_settings() }])).then(function (ok) {
        recorder.lastSave = { seq: ++recorder.saves, active: 'N', result: ok };
        $('#sandbox-save-result').text(String(ok));
        call(widget, 'destroy');
        closeModal();
        recorder.disabled = true;
        $('#sandbox-open-settings, #sandbox-disable').prop('disabled', true);
      });
    }

    $('#sandbox-open-settings').on('click', openSettings).prop('disabled', false);
    $('#sandbox-disable').on('click', disable).prop('disabled', false);

    // Kommo: render → init → bind_actions; a render returning false stops the chain.
    if (call(widget, 'render') !== false) {
      call(widget, 'init');
      call(widget, 'bind_actions');
    }
    recorder.ready = true;
    showWidgetAction();
    rewireDemo($);
  }

  // The call panel: a sample caller (or a typed number) rings an extension; the call in progress then moves on
  // with Answer, End (after an answer: ended, with its duration) or Miss (while ringing: hung up unanswered),
  // each one more event of the same call id through POST /sandbox/provider/call.
  // recorder.providerCall = {id, startTime, from, to, extension, name, state, answeredAt, duration}: the call the
  // panel plays (state: ringing, answered, ended, missed); recorder.lastProviderCall = {status, answer}: the
  // provider stand-in's last answer.
  var phone = { busy: false, timer: null };
  var CALL_CONTROLS = ['sandbox-call-caller', 'sandbox-call-from', 'sandbox-call-to', 'sandbox-call-extension'];

  function byId(id) { return document.getElementById(id); }
  function field(id) { return byId(id).value.trim(); }

  function minutes(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    return Math.floor(s / 60) + ':' + ('0' + (s % 60)).slice(-2);
  }

  function inProgress(call) { return call && (call.state === 'ringing' || call.state === 'answered'); }

  // The state line and which buttons apply.
  function showCall() {
    var call = recorder.providerCall;
    var line = byId('sandbox-call-state');
    var state = call ? call.state : 'idle';
    var who = call ? (call.name ? call.name + ' (' + call.from + ')' : call.from) + ' → ext ' + (call.extension || '—') : '';
    var text = {
      idle: 'No call',
      ringing: 'Ringing: ' + who,
      answered: 'Talking ' + (call && minutes((Date.now() - call.answeredAt) / 1000)) + ': ' + who,
      ended: 'Ended after ' + (call && minutes(call.duration || 0)) + ': ' + who,
      missed: 'Missed: ' + who
    }[state];
    line.textContent = text;
    line.setAttribute('data-state', state);
    if (call) line.title = 'call id ' + call.id; else line.removeAttribute('title');
    var live = inProgress(call);
    byId('sandbox-simulate-call').disabled = phone.busy || live;
    byId('sandbox-call-answer').disabled = phone.busy || state !== 'ringing';
    byId('sandbox-call-miss').disabled = phone.busy || state !== 'ringing';
    byId('sandbox-call-end').disabled = phone.busy || state !== 'answered';
    CALL_CONTROLS.forEach(function (id) { byId(id).disabled = live; });
    if (state === 'answered' && !phone.timer) phone.timer = setInterval(showCall, 1000);
    if (state !== 'answered' && phone.timer) { clearInterval(phone.timer); phone.timer = null; }
  }

  // The sample caller's hint under the picker; a typed number that is a sample's selects it.
  function showCaller() {
    var select = byId('sandbox-call-caller');
    var option = select.options[select.selectedIndex];
    byId('sandbox-call-hint').textContent = option && option.value ? option.getAttribute('data-hint') : 'A number typed below';
  }

  function pickCaller() {
    var value = byId('sandbox-call-caller').value;
    if (value) byId('sandbox-call-from').value = value;
    showCaller();
  }

  function typedNumber() {
    var select = byId('sandbox-call-caller');
    var typed = field('sandbox-call-from');
    var match = Array.prototype.filter.call(select.options, function (option) { return option.value && option.value === typed; })[0];
    select.value = match ? match.value : '';
    showCaller();
  }

  function callerName(number) {
    var sample = (boot.samples || []).filter(function (caller) { return caller.number === number; })[0];
    return sample ? sample.name : '';
  }

  // Posts the call's next event; resolves with the answer when the webhook took it (2xx), else null.
  function postEvent(call, status, extra) {
    var $ = window.jQuery;
    var output = byId('sandbox-provider-result');
    var webhookUrl = field('sandbox-call-webhook') || ($ ? shownWebhookUrl($) : '');
    if (!webhookUrl) {
      output.textContent = 'Open the widget settings first (or type a webhook URL).';
      byId('sandbox-call-webhook-box').open = true;
      return Promise.resolve(null);
    }
    var body = Object.assign({ webhook_url: webhookUrl, from: call.from, to: call.to, status: status }, extra);
    if (call.extension) body.extension = call.extension;
    if (call.id) { body.call_id = call.id; body.start_time = call.startTime; }
    if (field('sandbox-call-secret')) body.secret = field('sandbox-call-secret');
    output.textContent = '…';
    phone.busy = true;
    showCall();
    return fetch('/sandbox/provider/call', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (answer) {
        recorder.lastProviderCall = { status: response.status, answer: answer };
        if (answer.error) {
          output.textContent = answer.error.message;
          return null;
        }
        output.textContent = status + ': webhook answered ' + answer.upstream_status;
        return response.ok ? answer : null;
      });
    }).catch(function (error) {
      output.textContent = 'provider stand-in failed: ' + error;
      return null;
    }).then(function (answer) {
      phone.busy = false;
      return answer;
    });
  }

  function ring(event) {
    event.preventDefault();
    if (inProgress(recorder.providerCall) || phone.busy) return;
    var from = field('sandbox-call-from');
    if (!from) {
      byId('sandbox-provider-result').textContent = 'Pick a caller or type a number.';
      return;
    }
    var call = { id: null, from: from, to: field('sandbox-call-to'), extension: field('sandbox-call-extension'),
      name: callerName(from) };
    postEvent(call, 'ringing').then(function (answer) {
      if (answer) {
        call.id = answer.call_id;
        call.startTime = answer.start_time;
        call.state = 'ringing';
        recorder.providerCall = call;
      }
      showCall();
    });
  }

  // The call in progress moves to `state` once the webhook took its event (`extra`: more of the event).
  function advance(from, state, extra) {
    var call = recorder.providerCall;
    if (!call || call.state !== from || phone.busy) return;
    postEvent(call, state, extra).then(function (answer) {
      if (answer) {
        Object.assign(call, extra || {}, { state: state });
        if (state === 'answered') call.answeredAt = Date.now();
      }
      showCall();
    });
  }

  function answerCall() { advance('ringing', 'answered'); }
  function missCall() { advance('ringing', 'missed'); }
  function endCall() {
    var call = recorder.providerCall;
    if (call) advance('answered', 'ended', { duration: Math.round((Date.now() - call.answeredAt) / 1000) });
  }

  function callPanel() {
    byId('sandbox-call-form').addEventListener('submit', ring);
    byId('sandbox-call-answer').addEventListener('click', answerCall);
    byId('sandbox-call-end').addEventListener('click', endCall);
    byId('sandbox-call-miss').addEventListener('click', missCall);
    byId('sandbox-call-caller').addEventListener('change', pickCaller);
    byId('sandbox-call-from').addEventListener('input', typedNumber);
    // A webhook URL and secret typed here wire the configured provider account too.
    ['sandbox-call-webhook', 'sandbox-call-secret'].forEach(function (id) {
      byId(id).addEventListener('change', function () {
        wireProvider(field('sandbox-call-webhook'), field('sandbox-call-secret'), {});
      });
    });
    typedNumber();
    showCall();
    systemPanel();
  }

  // The systems panel: a whole call (answered, missed, outgoing) played by the local Zadarma, Yeastar or Twilio
  // straight into the webhook the settings show, signed their way, or by the AMI stand-in to the Asterisk
  // connector, which posts it. recorder.systemPlays: each play's {system, scenario, status, answer}.
  var PLAY_PATHS = { zadarma: '/sandbox/zadarma/play', yeastar: '/sandbox/yeastar/play', twilio: '/sandbox/twilio/play',
    asterisk: '/sandbox/ami/play' };
  var PLAY_GAP_MS = 1200;

  function showSystemHint() {
    var select = byId('sandbox-system');
    var option = select.options[select.selectedIndex];
    byId('sandbox-system-hint').textContent = option ? option.getAttribute('data-hint').replace(/\{origin\}/g, location.origin) : '';
  }

  function playResult(text, state) {
    var output = byId('sandbox-system-result');
    output.textContent = text;
    output.setAttribute('data-state', state);
  }

  // What one play's answer says: every delivery's HTTP status (the webhook's answers), or the refusal.
  function describePlay(system, response, answer) {
    if (system === 'asterisk' && response.status === 404) {
      return { text: 'This local Kommo runs no AMI stand-in: start it with SANDBOX_AMI_ADDR (cargo xtask run does).', state: 'refused' };
    }
    if (!response.ok) return { text: (answer && answer.error) || ('the player answered ' + response.status), state: 'refused' };
    if (system === 'asterisk') {
      return { text: 'Playing call ' + answer.call_id + ' to the connector (it posts each event to the server)', state: 'played' };
    }
    var statuses = (answer.deliveries || []).map(function (delivery) { return delivery.status; });
    var taken = statuses.every(function (status) { return status >= 200 && status < 300; });
    return {
      text: statuses.length + ' deliveries, the webhook answered ' + statuses.join(' ') + (taken ? '' : ': not all taken'),
      state: taken ? 'played' : 'refused'
    };
  }

  function playSystemCall(event) {
    event.preventDefault();
    var system = byId('sandbox-system').value;
    var scenario = byId('sandbox-system-scenario').value;
    var webhookUrl = field('sandbox-call-webhook') || (window.jQuery ? shownWebhookUrl(window.jQuery) : '');
    if (system !== 'asterisk' && !webhookUrl) {
      playResult('Save the widget\'s settings with this system first: the player posts to the webhook they show.', 'refused');
      return;
    }
    var body = { scenario: scenario, extension: field('sandbox-call-extension') || '101', gap_ms: PLAY_GAP_MS };
    var from = field('sandbox-call-from');
    if (system === 'yeastar') {
      body.secret = field('sandbox-call-secret');
      if (body.secret.indexOf('whsec_') !== 0) {
        playResult('Yeastar signs with the webhook\'s signing secret: reveal it in the settings (or type it under Webhook).', 'refused');
        byId('sandbox-call-webhook-box').open = true;
        return;
      }
    }
    if (system === 'yeastar') { if (from) body.number = from; } else if (from) { body.caller = from; }
    if (system !== 'asterisk') body.webhook_url = webhookUrl;
    byId('sandbox-system-play').disabled = true;
    playResult('Playing…', 'busy');
    fetch(PLAY_PATHS[system], { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })
      .then(function (response) {
        return response.json().catch(function () { return null; }).then(function (answer) {
          (recorder.systemPlays = recorder.systemPlays || []).push({ system: system, scenario: scenario, status: response.status, answer: answer });
          var said = describePlay(system, response, answer);
          playResult(said.text, said.state);
        });
      })
      .catch(function (error) { playResult('the player failed: ' + error, 'refused'); })
      .then(function () { byId('sandbox-system-play').disabled = false; });
  }

  function systemPanel() {
    byId('sandbox-system').addEventListener('change', showSystemHint);
    byId('sandbox-system-form').addEventListener('submit', playSystemCall);
    showSystemHint();
  }

  // Kommo's lists: the rows of the account's contacts, companies or leads (GET /sandbox/lists), each with a
  // checkbox; a selection shows Kommo's mass-action bar, whose "More" menu offers the widget (where its manifest
  // has the list's location) and calls its `contacts.selected` / `companies.selected` / `leads.selected`.
  var list = { view: null, rows: [], selected: {}, seq: 0 };
  var COLUMNS = {
    contacts: [['Name', 'name'], ['Company', 'company'], ['Phone', 'phones'], ['Email', 'emails']],
    companies: [['Name', 'name'], ['Phone', 'phones'], ['Email', 'emails']],
    leads: [['Name', 'name'], ['Stage', 'stage'], ['Budget', 'price'], ['Main contact', 'contact'], ['Phone', 'phones']]
  };

  function actionLinks(kind, values) {
    if (!values || !values.length) return '—';
    return values.map(function (value) {
      return '<a class="sandbox-' + kind + '" data-action="' + kind + '" data-value="' + text(value) + '">' + text(value) + '</a>';
    }).join('<br>');
  }

  function cell(row, key) {
    if (key === 'phones') return actionLinks('phone', row.phones);
    if (key === 'emails') return actionLinks('email', row.emails);
    var value = row[key];
    if (key === 'contact' && !value && row.company) value = row.company;
    if (key === 'price' && typeof value === 'number') value = value.toLocaleString('en-US');
    return value === null || value === undefined || value === '' ? '—' : text(value);
  }

  function selectedIds() {
    return list.rows.filter(function (row) { return list.selected[row.id]; }).map(function (row) { return row.id; });
  }

  function renderList() {
    var view = list.view;
    var columns = COLUMNS[view];
    byId('sandbox-list-title').textContent = view === 'leads' ? 'Leads' : 'Contacts';
    byId('sandbox-list-tabs').hidden = view === 'leads';
    ['contacts', 'companies'].forEach(function (tab) {
      byId('sandbox-tab-' + tab).classList.toggle('sandbox-list__tab_active', tab === view);
    });
    byId('sandbox-list-head').innerHTML = '<tr><th class="sandbox-list__check"><input type="checkbox" ' +
      'id="sandbox-list-select-all" aria-label="Select all"></th>' +
      columns.map(function (column) { return '<th>' + text(column[0]) + '</th>'; }).join('') + '</tr>';
    var rows = byId('sandbox-list-rows');
    rows.innerHTML = list.rows.map(function (row) {
      return '<tr class="sandbox-list__row" data-id="' + text(row.id) + '" data-type="' + text(row.type) + '">' +
        '<td class="sandbox-list__check"><input type="checkbox" class="sandbox-list__checkbox" aria-label="' +
        text(row.name) + '"></td>' +
        columns.map(function (column) {
          return '<td class="sandbox-list__cell sandbox-list__cell_' + column[1] + '">' + cell(row, column[1]) + '</td>';
        }).join('') + '</tr>';
    }).join('');
    var table = rows.parentNode;
    table.setAttribute('data-view', view);
    table.setAttribute('data-loaded', String(recorder.list.loaded));
    byId('sandbox-list-total').textContent = recorder.list.loaded ? list.rows.length + ' ' + LISTS[view].title.toLowerCase() : '…';
    byId('sandbox-list-empty').hidden = !recorder.list.loaded || list.rows.length > 0;
    refreshActions(rows);
    showSelection();
  }

  function showSelection() {
    var ids = selectedIds();
    recorder.list.selected = ids;
    Array.prototype.forEach.call(byId('sandbox-list-rows').querySelectorAll('tr[data-id]'), function (tr) {
      var on = !!list.selected[Number(tr.getAttribute('data-id'))];
      tr.classList.toggle('sandbox-list__row_selected', on);
      tr.querySelector('input.sandbox-list__checkbox').checked = on;
    });
    var all = byId('sandbox-list-select-all');
    if (all) {
      all.checked = ids.length > 0 && ids.length === list.rows.length;
      all.indeterminate = ids.length > 0 && ids.length < list.rows.length;
    }
    byId('sandbox-list-actions').hidden = ids.length === 0;
    byId('sandbox-list-selected').textContent = ids.length + ' selected';
    if (!ids.length) showMenu(false);
  }

  function showMenu(open) {
    byId('sandbox-list-more-menu').hidden = !open;
    byId('sandbox-list-more').setAttribute('aria-expanded', String(open));
  }

  // The widget's entry in "More": its name (and logo), where the manifest puts it on the list shown.
  function showWidgetAction() {
    var entry = byId('sandbox-list-widget-action');
    var area = current.view === 'card' ? null : LISTS[current.view].area;
    var offered = !!recorder.widget && !!area && (boot.locations || []).some(function (location) {
      return String(location).split('-')[0] === area;
    });
    entry.hidden = !offered;
    if (offered && !entry.childNodes.length) {
      var logo = boot.widget.logo ? '<img class="sandbox-list__widget-logo" alt="" src="' + text(boot.widget.logo) + '">' : '';
      entry.innerHTML = logo + '<span class="sandbox-list__widget-name">' + text(boot.widget.name) + '</span>';
    }
  }

  function widgetAction() {
    showMenu(false);
    if (!recorder.widget || !list.view) return;
    call(recorder.widget, LISTS[list.view].entity + '.selected');
  }

  function loadList(view) {
    var seq = ++list.seq;
    list.view = view;
    list.rows = [];
    list.selected = {};
    recorder.list = { view: view, loaded: false, rows: [], selected: [] };
    renderList();
    return fetch('/sandbox/lists?account_id=' + encodeURIComponent(boot.account.id)).then(function (response) {
      return response.ok ? response.json() : {};
    }).catch(function () { return {}; }).then(function (lists) {
      if (seq !== list.seq) return false;
      list.rows = lists[view] || [];
      recorder.list = {
        view: view,
        loaded: true,
        rows: list.rows.map(function (row) { return { id: row.id, type: row.type }; }),
        selected: []
      };
      renderList();
      return true;
    });
  }

  // Switches the page like Kommo's left menu: the lead card or a list, with its area; no widget callback runs
  // (the widget is init_once). Resolves once a list's rows are shown.
  function showView(view) {
    if (view !== 'card' && !LISTS[view]) return Promise.resolve(false);
    current.view = recorder.view = view;
    current.area = view === 'card' ? cardArea : LISTS[view].area;
    window.APP.widgets.system.area = current.area;
    window.APP.data.current_card = view === 'card' ? { id: boot.card_id || 1 } : null;
    byId('sandbox-view-card').hidden = view !== 'card';
    byId('sandbox-view-list').hidden = view === 'card';
    byId('sandbox-nav-leads').classList.toggle('sandbox-nav__item_active', view === 'card' || view === 'leads');
    byId('sandbox-nav-contacts').classList.toggle('sandbox-nav__item_active', view === 'contacts' || view === 'companies');
    var crumbs = byId('sandbox-crumbs');
    if (view === 'card') {
      crumbs.innerHTML = 'Leads <span>›</span> ' + text(crumbs.getAttribute('data-card-title') || '');
    } else {
      crumbs.textContent = LISTS[view].title;
    }
    showWidgetAction();
    if (view === 'card') {
      list.view = null;
      list.rows = [];
      list.selected = {};
      recorder.list = null;
      return Promise.resolve(true);
    }
    return loadList(view);
  }
  recorder.showView = showView;

  function listPanel() {
    Array.prototype.forEach.call(document.querySelectorAll('a[data-view]'), function (link) {
      var params = new URLSearchParams(location.search);
      params.set('view', link.getAttribute('data-view'));
      params.delete('area');
      link.setAttribute('href', '?' + params.toString());
      link.addEventListener('click', function (event) {
        event.preventDefault();
        showView(link.getAttribute('data-view'));
      });
    });
    byId('sandbox-list-head').addEventListener('change', function (event) {
      if (event.target.id !== 'sandbox-list-select-all') return;
      var on = event.target.checked;
      list.selected = {};
      if (on) list.rows.forEach(function (row) { list.selected[row.id] = true; });
      showSelection();
    });
    byId('sandbox-list-rows').addEventListener('change', function (event) {
      if (!event.target.classList.contains('sandbox-list__checkbox')) return;
      var id = Number(event.target.closest('tr').getAttribute('data-id'));
      if (event.target.checked) list.selected[id] = true; else delete list.selected[id];
      showSelection();
    });
    byId('sandbox-list-more').addEventListener('click', function (event) {
      event.stopPropagation();
      showMenu(byId('sandbox-list-more-menu').hidden);
    });
    var entry = byId('sandbox-list-widget-action');
    entry.addEventListener('click', widgetAction);
    entry.addEventListener('keydown', function (event) {
      if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); widgetAction(); }
    });
    document.addEventListener('click', function (event) {
      if (!event.target.closest || !event.target.closest('.sandbox-list__more')) showMenu(false);
    });
    showView(recorder.view);
  }

  // Kommo's router: its links (`a.js-navigate-link`, which the widget clicks, through jQuery, to open a card or a
  // new contact) change the page without a reload. The page records each path (recorder.navigations) and shows
  // the last one.
  function kommoRouter($) {
    recorder.navigations = [];
    $(document).on('click', 'a.js-navigate-link', function (event) {
      event.preventDefault();
      var path = this.getAttribute('href') || '';
      recorder.navigations.push(path);
      $('#sandbox-navigation').text(path);
    });
  }

  function languageLinks() {
    var box = document.getElementById('sandbox-langs');
    ['en', 'es', 'pt'].forEach(function (lang) {
      var params = new URLSearchParams(location.search);
      params.set('lang', lang);
      var link = document.createElement('a');
      link.href = '?' + params.toString();
      link.textContent = lang.toUpperCase();
      if (lang === boot.lang) link.className = 'sandbox-topbar__lang_current';
      box.appendChild(link);
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    languageLinks();
    callPanel();
    listPanel();
    require(['jquery'], function ($) {
      kommoRouter($);
      ensureInstalled($).then(function () { loadWidget($); });
    });
  });

  function loadWidget($) {
    require([boot.script_url], function (Widget) {
      if (typeof Widget !== 'function') {
        recorder.loadError = 'script.js did not define a widget constructor';
        return;
      }
      start($, Widget);
    }, function (error) {
      recorder.loadError = String(error);
      document.getElementById('sandbox-calls').textContent = 'script.js failed to load: ' + error;
    });
  }
})();
