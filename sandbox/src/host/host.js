//! The local Kommo's page script: builds Kommo's widget object around the archive's script.js and drives its callbacks.
//
// What tests read: window.__sandbox = {calls, results, thrown, lastSave, saving, ready, loadError, widget, tokenAs,
// install}.
// - calls: callback names in the order they were called; results: what render/init/bind_actions returned.
// - lastSave: {seq, active, result} of the last onSave; saving: true while one is pending.
// - tokenAs: {account_id?, user_id?, subdomain?, is_admin?, omit_is_admin?}: who the next disposable tokens speak
//   for and what they claim (POST /sandbox/token); the page's ?account, ?user and ?is_admin_claim set it.
// - install: {requested, status, connection, done}: the install request the page had the Kommo stand-in send
//   before loading the widget, the server's answer, and the last connection state the server reported.
(function () {
  'use strict';

  var boot = JSON.parse(document.getElementById('sandbox-boot').textContent);
  var strings = boot.strings;
  var recorder = window.__sandbox = {
    calls: [], results: {}, thrown: [], lastSave: null, saving: false, saves: 0,
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
    data: { current_card: { id: 1 }, current_view: null, current_list: null }
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

  function simulateCall(event) {
    event.preventDefault();
    var $ = window.jQuery;
    var output = document.getElementById('sandbox-provider-result');
    var typed = document.getElementById('sandbox-call-webhook').value.trim();
    var webhookUrl = typed || ($ ? shownWebhookUrl($) : '');
    if (!webhookUrl) {
      output.textContent = 'Open the widget settings first (or type a webhook URL).';
      return;
    }
    var field = function (id) { return document.getElementById(id).value.trim(); };
    var body = {
      webhook_url: webhookUrl,
      from: field('sandbox-call-from'),
      to: field('sandbox-call-to'),
      status: field('sandbox-call-status')
    };
    if (field('sandbox-call-extension')) body.extension = field('sandbox-call-extension');
    if (field('sandbox-call-secret')) body.secret = field('sandbox-call-secret');
    output.textContent = '…';
    fetch('/sandbox/provider/call', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (answer) {
        recorder.lastProviderCall = { status: response.status, answer: answer };
        output.textContent = answer.error ? answer.error.message : 'webhook answered ' + answer.upstream_status;
      });
    }).catch(function (error) {
      output.textContent = 'provider stand-in failed: ' + error;
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
    document.getElementById('sandbox-call-form').addEventListener('submit', simulateCall);
    require(['jquery'], function ($) {
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
