/*
 * Kommo VoIP widget: the AMD shell Kommo loads.
 *
 * It loads the Rust/wasm part, built by Trunk from widget/src as two modules, hands each the "host" object
 * (the only way the wasm reaches Kommo), and maps Kommo's callbacks onto their exports:
 *   widget.js + widget_bg.wasm (every page):       start_calls(host) -> CallsHandle { stop() }
 *     (call popups, the call-result modal and the push stream)
 *   settings.js + settings_bg.wasm (fetched when the settings modal opens, so only admins ever load it):
 *     mount_settings(root, host) -> SettingsHandle { save(active) -> Promise<bool>, unmount() }
 * Nothing here throws into Kommo's page: every callback catches and logs.
 */
define(['jquery'], function ($) {
  'use strict';

  // Replaced at packaging time with the server's public base URL (scheme + host[:port], no trailing slash).
  var API_BASE = '__KVOIP_API_BASE__';
  var STYLE_ID = 'kvoip-style';
  var LANGS = ['en', 'es', 'pt'];
  var I18N_SECTIONS = ['widget', 'settings', 'connection', 'errors', 'popup', 'status', 'result', 'deliveries'];
  // Kommo's card areas whose open record a call result may be logged in.
  var CARD_AREAS = { lcard: 'leads', ccard: 'contacts' };

  var CustomWidget = function () {
    var self = this;

    var state = {
      // Per wasm module: loading (Promise of the module, or of null when it failed; created once),
      // module (the initialised ES module), failure (why it could not be loaded, as text).
      modules: {},
      calls: null, // CallsHandle
      settings: null, // SettingsHandle
      settingsRoot: null, // div.kvoip-settings in the open settings modal
      started: false // render/init ran and destroy did not since
    };

    function log(what, error) {
      if (window.console && console.warn) {
        console.warn('[kvoip] ' + what, error);
      }
    }

    function describe(error) {
      if (!error) {
        return 'unknown error';
      }
      if (error.message) {
        return String(error.message);
      }
      return String(error);
    }

    // Base URL of the widget's files, without a trailing slash.
    function basePath() {
      var path = String((self.params && self.params.path) || '');
      return path.replace(/\/+$/, '');
    }

    function version() {
      var value = '';
      try {
        value = typeof self.get_version === 'function' ? self.get_version() : (self.params && self.params.version);
      } catch (e) {
        value = '';
      }
      return encodeURIComponent(String(value || ''));
    }

    function fileUrl(name) {
      return basePath() + '/' + name + '?v=' + version();
    }

    function language() {
      var lang = '';
      try {
        var system = typeof self.system === 'function' ? self.system() : null;
        lang = (system && system.lang) || (window.APP && window.APP.lang_id) || '';
      } catch (e) {
        lang = '';
      }
      lang = String(lang || '').slice(0, 2).toLowerCase();
      return LANGS.indexOf(lang) >= 0 ? lang : 'en';
    }

    // The whole i18n object of the current language.
    function strings() {
      if (self.langs && typeof self.langs === 'object') {
        return self.langs;
      }
      var all = {};
      for (var i = 0; i < I18N_SECTIONS.length; i++) {
        try {
          all[I18N_SECTIONS[i]] = (typeof self.i18n === 'function' && self.i18n(I18N_SECTIONS[i])) || {};
        } catch (e) {
          all[I18N_SECTIONS[i]] = {};
        }
      }
      return all;
    }

    function text(section, key) {
      var all = strings();
      var value = all && all[section] && all[section][key];
      return value ? String(value) : section + '.' + key;
    }

    function parseBody(xhr) {
      if (!xhr) {
        return null;
      }
      if (xhr.responseJSON !== undefined) {
        return xhr.responseJSON;
      }
      try {
        return xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch (e) {
        return null;
      }
    }

    // Calls our server with Kommo's disposable token. Never rejects: resolves {status, body};
    // status 0 means the network failed.
    function request(method, path, body) {
      return new Promise(function (resolve) {
        var settled = false;
        function reply(status, payload) {
          if (!settled) {
            settled = true;
            resolve({ status: Number(status) || 0, body: payload === undefined ? null : payload });
          }
        }
        function failed(xhr) {
          reply(xhr && xhr.status, parseBody(xhr));
        }
        try {
          var pending = self.$authorizedAjax({
            url: API_BASE + path,
            type: method,
            contentType: 'application/json',
            data: body ? JSON.stringify(body) : undefined,
            dataType: 'json'
          });
          if (pending && typeof pending.done === 'function' && typeof pending.fail === 'function') {
            pending
              .done(function (data, textStatus, xhr) {
                reply((xhr && xhr.status) || 200, data);
              })
              .fail(failed);
          } else if (pending && typeof pending.then === 'function') {
            pending.then(function (data) {
              reply(200, data);
            }, failed);
          } else {
            reply(0, null);
          }
        } catch (e) {
          log('request failed', e);
          reply(0, null);
        }
      });
    }

    // The lead or contact whose card is open ({type, id}), or null: on a list, a new card, or elsewhere.
    function currentCard() {
      try {
        var app = window.APP;
        var card = app && app.data && app.data.current_card;
        var id = card ? Number(card.id) : 0;
        if (!(id > 0) || (typeof app.isCard === 'function' && !app.isCard())) {
          return null;
        }
        var system = typeof self.system === 'function' ? self.system() : null;
        var type = CARD_AREAS[(system && system.area) || ''];
        return type ? { type: type, id: id } : null;
      } catch (e) {
        return null;
      }
    }

    // Opens a Kommo page (a card, a new contact) through Kommo's own navigation, as its links do:
    // no full page reload. Only Kommo's own paths.
    function navigate(path) {
      path = String(path || '');
      if (!/^\/(contacts|companies|leads)\/(detail\/\d+|add\/(\?[^#]*)?)$/.test(path)) {
        return false;
      }
      try {
        var link = document.createElement('a');
        link.className = 'js-navigate-link kvoip-navigate';
        link.href = path;
        link.style.display = 'none';
        document.body.appendChild(link);
        if (window.jQuery) {
          window.jQuery(link).trigger('click');
        } else {
          link.click();
        }
        link.parentNode.removeChild(link);
        return true;
      } catch (e) {
        log('cannot open ' + path, e);
        return false;
      }
    }
    // A phone's ring (two tones, 2 s on, 4 s off) while `on`, from Web Audio: nothing to download. A
    // browser that refuses sound before the user touched the page stays silent, quietly.
    var ringer = { context: null, timer: null };
    function ring(on) {
      try {
        if (!on) {
          if (ringer.timer) {
            clearInterval(ringer.timer);
            ringer.timer = null;
          }
          return true;
        }
        if (ringer.timer) {
          return true;
        }
        var Context = window.AudioContext || window.webkitAudioContext;
        if (!Context) {
          return false;
        }
        ringer.context = ringer.context || new Context();
        var context = ringer.context;
        var burst = function () {
          if (context.state !== 'running') {
            Promise.resolve(context.resume()).catch(function () {});
            return;
          }
          var gain = context.createGain();
          gain.gain.value = 0.08;
          gain.connect(context.destination);
          [440, 480].forEach(function (hz) {
            var tone = context.createOscillator();
            tone.frequency.value = hz;
            tone.connect(gain);
            tone.start();
            tone.stop(context.currentTime + 2);
          });
        };
        burst();
        ringer.timer = setInterval(burst, 6000);
        return true;
      } catch (e) {
        return false;
      }
    }
    function host() {
      return {
        apiBase: API_BASE,
        lang: language(),
        strings: strings(),
        request: request,
        currentCard: currentCard,
        navigate: navigate,
        ring: ring
      };
    }

    function addStyle() {
      if (document.getElementById(STYLE_ID)) {
        return;
      }
      var link = document.createElement('link');
      link.id = STYLE_ID;
      link.rel = 'stylesheet';
      link.href = fileUrl('style.css');
      document.head.appendChild(link);
    }

    // The wasm module `name` ('widget' or 'settings'): its glue <name>.js and <name>_bg.wasm, loaded from the
    // archive's own URL and initialised once; resolves with the module, or with null (failure() says why).
    function loadModule(name) {
      var entry = state.modules[name];
      if (entry) {
        return entry.loading;
      }
      entry = state.modules[name] = { loading: null, module: null, failure: null };
      entry.loading = Promise.resolve()
        .then(function () {
          if (typeof WebAssembly !== 'object' || !WebAssembly) {
            throw new Error('WebAssembly is not available in this browser');
          }
          return import(fileUrl(name + '.js'));
        })
        .then(function (mod) {
          return Promise.resolve(mod.default({ module_or_path: fileUrl(name + '_bg.wasm') })).then(function () {
            return mod;
          });
        })
        .then(
          function (mod) {
            entry.module = mod;
            return mod;
          },
          function (error) {
            entry.failure = describe(error);
            log('the widget could not be loaded (' + name + ')', error);
            return null;
          }
        );
      return entry.loading;
    }

    function loaded(name) {
      var entry = state.modules[name];
      return entry ? entry.module : null;
    }

    function failure(name) {
      var entry = state.modules[name];
      return entry ? entry.failure : null;
    }

    function startCalls() {
      var calls = loaded('widget');
      if (state.calls || !calls) {
        return;
      }
      try {
        state.calls = calls.start_calls(host());
      } catch (e) {
        log('cannot start call popups', e);
      }
    }

    function stopCalls() {
      if (state.calls) {
        var calls = state.calls;
        state.calls = null;
        try {
          calls.stop();
          calls.free();
        } catch (e) {
          log('cannot stop call popups', e);
        }
      }
      ring(false);
      $('.kvoip-popups, .kvoip-call-result').remove();
    }

    // Idempotent: the stylesheet, the wasm and the call popups, whichever callback comes first.
    function start() {
      state.started = true;
      addStyle();
      loadModule('widget').then(function (mod) {
        // destroy() may have come first.
        if (mod && state.started) {
          startCalls();
        }
      });
    }

    function unmountSettings() {
      if (state.settings) {
        var settings = state.settings;
        state.settings = null;
        try {
          settings.unmount();
          settings.free();
        } catch (e) {
          log('cannot unmount the settings', e);
        }
      }
      if (state.settingsRoot) {
        $(state.settingsRoot).remove();
        state.settingsRoot = null;
      }
    }

    function showFailure(root) {
      if (!root) {
        return;
      }
      $(root).find('.kvoip-error').remove();
      var box = document.createElement('div');
      box.className = 'kvoip-error';
      box.setAttribute('role', 'alert');
      box.style.color = '#c13c3c'; // readable even when style.css could not be loaded either
      box.textContent = text('errors', 'wasm_failed');
      var reason = failure('settings');
      if (reason) {
        // The browser's own (English, technical) reason, kept apart from the translated sentence
        // so that support can read it without it reading as part of the message.
        var detail = document.createElement('div');
        detail.className = 'kvoip-error__detail';
        detail.style.marginTop = '6px';
        detail.style.fontSize = '12px';
        detail.style.color = '#8a6d6d';
        detail.textContent = text('errors', 'details') + ': ' + reason;
        box.appendChild(detail);
      }
      root.appendChild(box);
    }

    function mountSettings(root) {
      if (state.settingsRoot !== root) {
        return; // the modal was closed or reopened meanwhile
      }
      var settings = loaded('settings');
      if (!settings) {
        root.textContent = '';
        showFailure(root);
        return;
      }
      try {
        // The loading line stays until the server said who the user is; the wasm then replaces it.
        state.settings = settings.mount_settings(root, host());
      } catch (e) {
        root.textContent = '';
        state.modules.settings.failure = describe(e);
        log('cannot show the settings', e);
        showFailure(root);
      }
    }

    this.callbacks = {
      render: function () {
        try {
          start();
        } catch (e) {
          log('render failed', e);
        }
        return true;
      },

      init: function () {
        try {
          start();
        } catch (e) {
          log('init failed', e);
        }
        return true;
      },

      bind_actions: function () {
        return true;
      },

      settings: function ($modal) {
        try {
          unmountSettings();
          addStyle();
          var $modalEl = $($modal);
          var $body = $modalEl.find('.modal-body');
          var $target = $body.length ? $body.first() : $modalEl;
          var root = document.createElement('div');
          root.className = 'kvoip-settings';
          var loading = document.createElement('p');
          loading.className = 'kvoip-settings__loading';
          loading.textContent = text('settings', 'loading');
          root.appendChild(loading);
          $target.append(root);
          state.settingsRoot = root;
          loadModule('settings').then(function () {
            mountSettings(root);
          });
        } catch (e) {
          log('settings failed', e);
        }
        return true;
      },

      onSave: function (data) {
        try {
          var active = !!data && data.active === 'Y';
          return loadModule('settings').then(function () {
            if (!state.settings) {
              showFailure(state.settingsRoot);
              return false;
            }
            // With active = false the wasm stores the widget as off (call processing stops) without validating.
            return Promise.resolve(state.settings.save(active)).then(
              function (saved) {
                return saved === true;
              },
              function (error) {
                log('save failed', error);
                return false;
              }
            );
          });
        } catch (e) {
          log('onSave failed', e);
          return Promise.resolve(false);
        }
      },

      destroy: function () {
        try {
          unmountSettings();
          stopCalls();
          state.started = false;
          $('.kvoip-settings').remove();
          $('#' + STYLE_ID).remove();
        } catch (e) {
          log('destroy failed', e);
        }
      },

      advancedSettings: function () {
        return true;
      },

      contacts: {
        selected: function () {}
      },

      leads: {
        selected: function () {}
      }
    };

    return this;
  };

  return CustomWidget;
});
