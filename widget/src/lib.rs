//! The Kommo VoIP widget's wasm: the settings form and the incoming-call popups, exported to script.js.
//!
//! Invariant: the wasm reaches Kommo only through the host object script.js passes in ([`host::Host`]);
//! it talks to our server through that host, except for the push stream (an `EventSource` on a ticket).

pub mod calls;
pub mod host;
pub mod i18n;
pub mod push;
pub mod settings;

use std::rc::Rc;

use leptos::mount::mount_to;
use leptos::prelude::*;
use leptos::tachys::view::any_view::AnyViewState;
use wasm_bindgen::prelude::*;
use web_sys::HtmlElement;

use crate::calls::{CallBoard, CallPopups};
use crate::host::Host;
use crate::push::PushStream;
use crate::settings::{SettingsForm, SettingsModel};

type Mounted = leptos::mount::UnmountHandle<AnyViewState>;

/// Renders the settings form into `root` (script.js's `div.kvoip-settings`) and loads the stored settings.
#[wasm_bindgen]
pub fn mount_settings(root: HtmlElement, host: JsValue) -> Result<SettingsHandle, JsError> {
    let host = Rc::new(Host::from_js(host)?);
    let model = SettingsModel::default();
    let mounted = {
        let (model, i18n, lang) = (model.clone(), host.i18n(), host.lang().to_owned());
        mount_to(root, move || {
            view! { <SettingsForm model i18n lang /> }.into_any()
        })
    };
    let loader = (model.clone(), Rc::clone(&host));
    wasm_bindgen_futures::spawn_local(async move { loader.0.load(&loader.1).await });
    Ok(SettingsHandle {
        model,
        host,
        mounted: Some(mounted),
    })
}

/// The mounted settings form, kept by script.js until the modal goes away.
#[wasm_bindgen]
pub struct SettingsHandle {
    model: SettingsModel,
    host: Rc<Host>,
    /// Dropping it unmounts the form, so it lives here until `unmount`.
    mounted: Option<Mounted>,
}

#[wasm_bindgen]
impl SettingsHandle {
    /// Validates and saves the form (`active` is Kommo's flag); resolves `true` only when the server stored it.
    pub fn save(&self, active: bool) -> js_sys::Promise {
        let (model, host) = (self.model.clone(), Rc::clone(&self.host));
        wasm_bindgen_futures::future_to_promise(async move {
            Ok(JsValue::from_bool(model.save(&host, active).await))
        })
    }

    /// Removes the form from the page. Safe to call twice.
    pub fn unmount(&mut self) {
        self.mounted.take();
    }
}

/// Opens the push stream and shows a popup for each incoming call (in `div.kvoip-popups` on `document.body`).
#[wasm_bindgen]
pub fn start_calls(host: JsValue) -> Result<CallsHandle, JsError> {
    let host = Rc::new(Host::from_js(host)?);
    let document = web_sys::window()
        .and_then(|window| window.document())
        .ok_or_else(|| JsError::new("no document"))?;
    let body = document
        .body()
        .ok_or_else(|| JsError::new("no document body"))?;
    let root: HtmlElement = document
        .create_element("div")
        .map_err(|_| JsError::new("cannot create the popups root"))?
        .unchecked_into();
    root.set_class_name("kvoip-popups");
    root.set_attribute("lang", host.lang()).ok();
    body.append_child(&root)
        .map_err(|_| JsError::new("cannot attach the popups root"))?;

    let board = ArcRwSignal::new(CallBoard::default());
    let mounted = {
        let (board, i18n) = (board.clone(), host.i18n());
        mount_to(root.clone(), move || {
            view! { <CallPopups board i18n /> }.into_any()
        })
    };
    let stream = PushStream::start(host, move |call| board.update(|board| board.upsert(call)));
    Ok(CallsHandle {
        stream,
        mounted: Some(mounted),
        root,
    })
}

/// The running call popups, kept by script.js until `destroy`.
#[wasm_bindgen]
pub struct CallsHandle {
    stream: PushStream,
    /// Dropping it unmounts the popups, so it lives here until `stop`.
    mounted: Option<Mounted>,
    root: HtmlElement,
}

#[wasm_bindgen]
impl CallsHandle {
    /// Closes the stream and removes the popups. Safe to call twice.
    pub fn stop(&mut self) {
        self.stream.stop();
        self.mounted.take();
        self.root.remove();
    }
}

impl Drop for CallsHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
