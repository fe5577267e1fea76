/*
 * Kommo VoIP widget: the AMD shell Kommo loads.
 *
 * Kommo loads it on every page for every user, so it keeps the push stream itself (a few kilobytes) and loads
 * the Rust/wasm part, built by Trunk from widget/src as two modules, only when it is needed, handing each the
 * "host" object (the only way the wasm reaches Kommo):
 *   widget.js + widget_bg.wasm, at the first call for this user (an event, or a call in progress at start), or
 *   when a call list is made or one is open at start:
 *     start_calls(host) -> CallsHandle { push(eventJson) -> bool, open_dialer(viewJson?) -> bool, stop() }
 *     (call popups, call-result modal, the call-list panel)
 *   settings.js + settings_bg.wasm, when the settings modal opens (so only admins ever load it):
 *     mount_settings(root, host) -> SettingsHandle { save(active) -> Promise<bool>, unmount() }
 * A browser that cannot run the wasm still hears of a ringing call, through Kommo's own call notification
 * (APP.notifications.add_call), unless the account has the server send Kommo's notification itself.
 * Click-to-call (add_action('phone')) and making a call list (the lists' "More" menu) need no wasm: one request
 * each, answered with one of Kommo's messages.
 * Nothing here throws into Kommo's page: every callback catches and logs.
 */
define(['jquery'], function ($) {
  'use strict';

  // Replaced at packaging time with the server's public base URL (scheme + host[:port], no trailing slash).
  var API_BASE = '__KVOIP_API_BASE__';
  var STYLE_ID = 'kvoip-style';
  var LANGS = ['en', 'es', 'pt'];
  var I18N_SECTIONS = ['widget', 'settings', 'connection', 'errors', 'popup', 'status', 'result', 'deliveries', 'dialer'];
  // Kommo's card areas whose open record a call result may be logged in.
  var CARD_AREAS = { lcard: 'leads', ccard: 'contacts' };
  // Our server's push stream (shared::api::paths, CALL_EVENT) and its reconnection delays: doubling from
  // FIRST_MS up to MAX_MS, jittered; a stream that stayed open MAX_MS or longer resets them.
  var PUSH = {
    ACTIVE: '/widget/v1/calls/active',
    TICKET: '/widget/v1/push/ticket',
    EVENTS: '/widget/v1/push/events',
    OPTIONS: '/widget/v1/calls/options',
    EVENT: 'call',
    FIRST_MS: 1000,
    MAX_MS: 60000,
    // Events kept while the calls module loads; more than this and the oldest are dropped.
    MAX_PENDING: 200
  };
  // Where the wasm cannot run, how long Kommo's notification of a ringing call waits for who is calling.
  var FALLBACK_WAIT_MS = 1500;
  // Calling out (shared::api::paths, MAX_CALL_LIST_ENTRIES): a number clicked again while its call is being
  // placed, or within HOLD_MS after, places nothing (the server holds each user's calls apart too).
  var DIAL = {
    ORIGINATE: '/widget/v1/calls/originate',
    LISTS: '/widget/v1/call-lists',
    HOLD_MS: 3000,
    MAX_ENTRIES: 250,
    // The error codes (shared::api::dial_errors and others) with a sentence of their own in i18n `dialer`.
    CODES: ['no_extension', 'provider_refused', 'provider_unreachable', 'integration_off', 'invalid_number',
      'already_dialing', 'call_lists_off'],
    LIST_CODES: ['call_lists_off', 'rate_limited', 'not_found']
  };
  // A row's `type` in Kommo's list selection, as the call list's source it belongs to.
  var KINDS = { contact: 'contacts', contacts: 'contacts', company: 'companies', companies: 'companies', lead: 'leads', leads: 'leads' };

  var CustomWidget = function () {
    var self = this;

    var state = {
      // Per wasm module: loading (Promise of the module, or of null when it failed; created once),
      // module (the initialised ES module), failure (why it could not be loaded, as text).
      modules: {},
      calls: null, // CallsHandle
      push: null, // the push stream: { stopped, source, timer, lastEventId, backoff }
      pending: [], // call events (JSON) waiting for the calls module
      notified: {}, // call ids shown through Kommo's own notification, or too late for it (no wasm)...
      notifiedOrder: [], // ...oldest first, at most PUSH.MAX_PENDING of them
      waiting: {}, // call id -> { call, timer }: ringing calls whose Kommo notification waits for the caller
      settings: null, // SettingsHandle
      settingsRoot: null, // div.kvoip-settings in the open settings modal
      dialGuard: {}, // number (its digits) -> until when clicking it places nothing (Infinity while placing)
      makingList: false, // a call list is being made
      dialerView: null, // {view}: the call-list panel to open once the calls module runs
      phoneAction: false, // add_action('phone') registered
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

    // Hands the call events waiting for the calls module to it, in order, starting it first.
    function flushCalls() {
      var calls = loaded('widget');
      if (!calls || !state.started) {
        return;
      }
      if (!state.calls) {
        try {
          state.calls = calls.start_calls(host());
        } catch (e) {
          log('cannot start call popups', e);
          return;
        }
      }
      var events = state.pending;
      state.pending = [];
      for (var i = 0; i < events.length; i++) {
        try {
          state.calls.push(events[i]);
        } catch (e) {
          log('cannot show a call', e);
        }
      }
      var dialer = state.dialerView;
      state.dialerView = null;
      if (dialer) {
        try {
          state.calls.open_dialer(dialer.view);
        } catch (e) {
          log('cannot show the call list', e);
        }
      }
    }

    // The call-list panel (calls module): with `view` (the JSON of a list just made), else the current list.
    function openDialer(view) {
      state.dialerView = { view: view || null };
      loadModule('widget').then(function (mod) {
        if (!mod && state.dialerView) {
          state.dialerView = null;
          notify(true, text('dialer', 'title'), text('errors', 'wasm_failed'));
        }
        flushCalls();
      });
    }

    // One of Kommo's transient messages (`error`: the red one). Kommo shows them as HTML: escaped.
    function notify(error, header, body) {
      var notifications = window.APP && window.APP.notifications;
      var show = notifications && notifications[error ? 'show_message_error' : 'show_message'];
      try {
        if (typeof show === 'function') {
          show.call(notifications, { header: escapeHtml(header), text: escapeHtml(body) });
          return;
        }
      } catch (e) {
        log('cannot show a message', e);
      }
      log(header + ': ' + body);
    }

    // The i18n key (section `dialer`) of what went wrong: the error code's sentence when it has one.
    function problem(reply, codes) {
      var code = reply.body && reply.body.error && reply.body.error.code;
      if (DIAL.CODES.indexOf(code) >= 0 || (codes || []).indexOf(code) >= 0) {
        return code;
      }
      return reply.status === 0 ? 'network' : reply.status === 401 || reply.status === 403 ? 'unauthorized' : 'generic';
    }

    // Click-to-call: the provider rings the user's extension, then the number Kommo shows (`data.value`).
    function dial(data) {
      var number = String((data && data.value) || '').trim();
      var key = number.replace(/\D/g, '');
      var now = Date.now();
      if (!state.started || !key || state.dialGuard[key] > now) {
        return; // a repeat of a call being placed, or just placed
      }
      state.dialGuard[key] = Infinity;
      request('POST', DIAL.ORIGINATE, { to: number })
        .then(function (reply) {
          var placed = reply.status === 200 && reply.body;
          if (placed) {
            state.dialGuard[key] = Date.now() + DIAL.HOLD_MS;
            notify(false, text('dialer', 'calling').replace('#NUMBER#', placed.to_shown || number),
              text('dialer', 'calling_text').replace('#EXTENSION#', placed.extension || ''));
            return;
          }
          delete state.dialGuard[key];
          var said = problem(reply);
          notify(said !== 'already_dialing', text('dialer', 'call_failed'), text('dialer', said));
        })
        .catch(function (e) {
          delete state.dialGuard[key];
          log('click-to-call failed', e);
        });
    }

    // The ids selected in Kommo's list, for a call list from `source`: in order, each once, numbers only;
    // rows of another kind (a contacts list shows companies too) are left out.
    function selectedIds(source) {
      var picked = typeof self.list_selected === 'function' ? self.list_selected() : null;
      var rows = (picked && picked.selected) || [];
      var ids = [];
      var seen = {};
      for (var i = 0; i < rows.length; i++) {
        var row = rows[i] || {};
        var id = String(row.id === undefined || row.id === null ? '' : row.id).trim();
        var kind = KINDS[String(row.type || '').toLowerCase()];
        if (/^[1-9]\d{0,14}$/.test(id) && (!kind || kind === source) && !seen[id]) {
          seen[id] = true;
          ids.push(Number(id));
        }
      }
      return ids;
    }

    // "More → call list" in one of Kommo's lists: the selection becomes the user's call list, shown in the panel.
    function makeList(source) {
      if (!state.started || state.makingList) {
        return;
      }
      var ids = selectedIds(source);
      if (!ids.length || ids.length > DIAL.MAX_ENTRIES) {
        notify(true, text('dialer', 'list_failed'), ids.length
          ? text('dialer', 'too_many').replace('#MAX#', DIAL.MAX_ENTRIES).replace('#COUNT#', ids.length)
          : text('dialer', 'nothing_selected'));
        return;
      }
      state.makingList = true;
      request('POST', DIAL.LISTS, { source: source, ids: ids })
        .then(function (reply) {
          state.makingList = false;
          if (reply.status === 201 && reply.body) {
            openDialer(JSON.stringify(reply.body));
          } else {
            notify(true, text('dialer', 'list_failed'), text('dialer', problem(reply, DIAL.LIST_CODES)));
          }
        })
        .catch(function (e) {
          state.makingList = false;
          log('the call list failed', e);
        });
    }

    function listAction(source) {
      return function () {
        try {
          makeList(source);
        } catch (e) {
          log('the call list failed', e);
        }
        return true;
      };
    }

    // One call event (the JSON of an IncomingCall) for the popups: at once when the calls module runs,
    // else kept while it loads.
    function deliver(json) {
      if (state.pending.length >= PUSH.MAX_PENDING) {
        state.pending.shift();
      }
      state.pending.push(json);
      if (state.calls) {
        flushCalls();
        return;
      }
      loadModule('widget').then(function (mod) {
        if (mod) {
          flushCalls();
        } else if (state.started) {
          kommoNotification();
        }
      });
    }

    // The wasm cannot run in this browser: each ringing inbound call is shown through Kommo's own call
    // notification instead (once per call; after who is calling arrives, or FALLBACK_WAIT_MS without it),
    // unless the account has the server send that notification (then Kommo shows it already, and a second
    // one would be a duplicate). A call answered or ended before then is not shown.
    function kommoNotification() {
      var events = state.pending;
      state.pending = [];
      for (var i = 0; i < events.length; i++) {
        var call = null;
        try {
          call = JSON.parse(events[i]);
        } catch (e) {
          call = null;
        }
        if (!call || call.direction === 'outbound' || state.notified[call.call_id]) {
          continue;
        }
        var id = call.call_id;
        var waiting = state.waiting[id];
        if (call.status !== 'ringing') {
          // Answered or over: too late for a notification, also for a late event that still says ringing.
          if (waiting) {
            clearTimeout(waiting.timer);
            delete state.waiting[id];
          }
          settle(id);
          continue;
        }
        if (!waiting) {
          if (Object.keys(state.waiting).length >= PUSH.MAX_PENDING) {
            continue;
          }
          waiting = state.waiting[id] = { call: call, timer: null };
          waiting.timer = setTimeout(notifyInKommo, FALLBACK_WAIT_MS, id);
        }
        if (call.caller) {
          waiting.call.caller = call.caller;
          clearTimeout(waiting.timer);
          notifyInKommo(id);
        }
      }
    }

    // The call `id` gets no (further) Kommo notification on this page.
    function settle(id) {
      if (state.notified[id]) {
        return;
      }
      state.notified[id] = true;
      state.notifiedOrder.push(id);
      if (state.notifiedOrder.length > PUSH.MAX_PENDING) {
        delete state.notified[state.notifiedOrder.shift()];
      }
    }

    function notifyInKommo(id) {
      var waiting = state.waiting[id];
      if (!waiting) {
        return;
      }
      delete state.waiting[id];
      settle(id);
      request('GET', PUSH.OPTIONS).then(function (reply) {
        if (reply.status === 200 && reply.body && !reply.body.kommo_notification && state.started) {
          addKommoCall(waiting.call);
        }
      });
    }

    function escapeHtml(value) {
      var holder = document.createElement('span');
      holder.textContent = String(value);
      return holder.innerHTML;
    }

    function addKommoCall(call) {
      var notifications = window.APP && window.APP.notifications;
      if (!notifications || typeof notifications.add_call !== 'function') {
        return;
      }
      var caller = call.caller || null;
      var number = (caller && caller.number) || call.from;
      var entity = caller && (caller.contact ? { type: 'contact', link: caller.contact } : caller.company ? { type: 'company', link: caller.company } : null);
      // Kommo shows `text` as HTML: names and numbers (anyone with access to the CRM or the provider can
      // write them) go in escaped.
      var notice = {
        header: text('popup', 'incoming'),
        text: escapeHtml(entity && entity.link.name ? entity.link.name + ' · ' + number : number),
        date: Math.ceil(Date.now() / 1000),
        from: call.from,
        to: call.to
      };
      if (entity) {
        notice.element = { id: entity.link.id, type: entity.type };
      } else {
        var link = document.createElement('a');
        link.href = '/contacts/add/?phone=' + encodeURIComponent(call.from);
        link.textContent = text('popup', 'create_contact');
        notice.text = escapeHtml(number) + ' · ' + link.outerHTML;
      }
      try {
        notifications.add_call(notice);
      } catch (e) {
        log('cannot show Kommo\'s call notification', e);
      }
    }

    // The push stream: before each stream, this user's calls still in progress (a reload, a new tab, a
    // reconnect shows them again); each stream resumes after the last event seen, so an event sent while
    // the page was reconnecting arrives, once. The ticket is single-use: on any error the stream is closed
    // and a new ticket fetched after the next delay.
    function startPush() {
      if (state.push) {
        return;
      }
      var push = (state.push = { stopped: false, source: null, timer: null, lastEventId: null, backoff: PUSH.FIRST_MS });

      function seen(id) {
        if (typeof id === 'number' && (push.lastEventId === null || id > push.lastEventId)) {
          push.lastEventId = id;
        }
      }

      function later() {
        if (push.stopped) {
          return;
        }
        var delay = push.backoff;
        push.backoff = Math.min(push.backoff * 2, PUSH.MAX_MS);
        // Jitter: spread the reconnections of many open pages after a server restart.
        push.timer = setTimeout(connect, delay * (0.5 + Math.random() / 2));
      }

      function listen(ticket) {
        var url = API_BASE + PUSH.EVENTS + '?ticket=' + encodeURIComponent(ticket);
        if (push.lastEventId !== null) {
          url += '&last_event_id=' + push.lastEventId;
        }
        var source;
        try {
          source = new EventSource(url);
        } catch (e) {
          log('cannot open the push stream', e);
          later();
          return;
        }
        var openedAt = null;
        source.onopen = function () {
          openedAt = Date.now();
        };
        source.addEventListener(PUSH.EVENT, function (event) {
          var call = null;
          try {
            call = JSON.parse(event.data);
          } catch (e) {
            log('unreadable call event', e);
            return;
          }
          seen(call && call.event_id);
          deliver(String(event.data));
        });
        // A stream that ends (its lifetime passed, the server restarted) or was refused lands here too.
        source.onerror = function () {
          source.close();
          if (push.source === source) {
            push.source = null;
          }
          if (openedAt !== null && Date.now() - openedAt >= PUSH.MAX_MS) {
            push.backoff = PUSH.FIRST_MS;
          }
          later();
        };
        push.source = source;
      }

      function connect() {
        push.timer = null;
        if (push.stopped) {
          return;
        }
        request('GET', PUSH.ACTIVE)
          .then(function (reply) {
            if (push.stopped) {
              return null;
            }
            var active = reply.status === 200 && reply.body;
            if (active && active.call_list) {
              openDialer(null); // a list still open (made in another tab, or before a reload)
            }
            if (active && Array.isArray(active.calls)) {
              if (push.lastEventId === null) {
                seen(active.last_event_id);
              }
              for (var i = 0; i < active.calls.length; i++) {
                deliver(JSON.stringify(active.calls[i]));
              }
            }
            return request('POST', PUSH.TICKET);
          })
          .then(function (reply) {
            if (!reply || push.stopped) {
              return;
            }
            if (reply.status === 200 && reply.body && reply.body.ticket) {
              listen(String(reply.body.ticket));
              return;
            }
            if (reply.status === 429) {
              push.backoff = PUSH.MAX_MS; // refused for load: the longest delay
            }
            later();
          })
          .catch(function (error) {
            // Never leave the page without a stream: whatever went wrong, try again later.
            log('the push stream failed', error);
            later();
          });
      }

      connect();
    }

    function stopPush() {
      var push = state.push;
      state.push = null;
      if (push) {
        push.stopped = true;
        if (push.timer) {
          clearTimeout(push.timer);
        }
        if (push.source) {
          push.source.close();
        }
      }
      state.pending = [];
      for (var id in state.waiting) {
        if (Object.prototype.hasOwnProperty.call(state.waiting, id)) {
          clearTimeout(state.waiting[id].timer);
        }
      }
      state.waiting = {};
    }

    function stopCalls() {
      stopPush();
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
      state.dialerView = null;
      $('.kvoip-popups, .kvoip-call-result, .kvoip-dialer').remove();
    }

    // Idempotent: the stylesheet and the push stream, whichever callback comes first. The calls module
    // loads at the first call.
    function start() {
      state.started = true;
      addStyle();
      startPush();
      if (!state.phoneAction && typeof self.add_action === 'function') {
        state.phoneAction = true;
        self.add_action('phone', function (data) {
          try {
            dial(data);
          } catch (e) {
            log('click-to-call failed', e);
          }
        });
      }
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
          state.phoneAction = false;
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
        selected: listAction('contacts')
      },

      companies: {
        selected: listAction('companies')
      },

      leads: {
        selected: listAction('leads')
      }
    };

    return this;
  };

  return CustomWidget;
});
