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
(function () {
  'use strict';

  var boot = JSON.parse(document.getElementById('sandbox-boot').textContent);
  var strings = boot.strings;
  var recorder = window.__sandbox = {
    calls: [], results: {}, thrown: [], lastSave: null, saving: false, saves: 0, kommoCalls: [],
    ready: false, loadError: null, widget: null,
    // Tokens speak for the account and user the page shows (?account=<id>, ?user=<id>, ?is_admin_claim=).
    tokenAs: boot.token_as || { account_id: boot.account.id }
  };

  // The slice of Kommo's APP global widgets commonly touch.
  window.APP = {
    lang_id: boot.lang,
    constant: function (name) {
      return { account: boot.account, user: boot.user, managers: {}, groups: {} }[name];
    },
    widgets: { system: { area: boot.area } },
    getBaseEntity: function () { return 'leads'; },
    isCard: function () { return boot.area.slice(1) === 'card'; },
    // The lead the page shows: the demo account's sample lead, else a placeholder id.
    data: { current_card: { id: boot.card_id || 1 }, current_view: null, current_list: null },
    // Kommo's own notifications: add_call shows a call at the bottom left (KOMMO.md 6.1); here each one is
    // recorded in window.__sandbox.kommoCalls and shown as a plain box.
    notifications: {
      add_call: function (notice) {
        recorder.kommoCalls.push(JSON.parse(JSON.stringify(notice)));
        var box = document.createElement('div');
        box.className = 'sandbox-kommo-call';
        box.innerHTML = '<b></b><div></div>';
        box.firstChild.textContent = String(notice.header || '');
        box.lastChild.innerHTML = String(notice.text || '');
        document.body.appendChild(box);
      }
    }
  };

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
          area: boot.area,
          subdomain: boot.account.subdomain,
          amouser_id: boot.user.id,
          amouser: boot.user.login,
          amohash: 'sandbox',
          domain: 'kommo.com',
          lang: boot.lang
        };
      },
      $authorizedAjax: function (options) { return authorizedAjax($, options); }
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
      var callback = widget.callbacks && widget.callbacks[name];
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

  function start($, Widget) {
    Object.setPrototypeOf(Widget.prototype, kommoHelpers($));
    var widget = new Widget();
    recorder.widget = widget;
    var $modal = null;

    function closeModal() {
      if (!$modal) return;
      var url = shownWebhookUrl($);
      if (url) $('#sandbox-call-webhook').val(url);
      // The signing secret is shown in full only right after it was issued: take it for signed provider calls.
      var secret = String($('input.kvoip-webhook-secret').val() || '').trim();
      if (secret.indexOf('whsec_') === 0) $('#sandbox-call-secret').val(secret);
      $modal.remove();
      $modal = null;
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
    typedNumber();
    showCall();
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
