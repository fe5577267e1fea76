//! The domain crate shared by the widget (wasm32) and the server: entities, settings and their
//! validation, and the wire types both sides exchange.
//!
//! Invariant: this crate does no I/O and depends on no runtime, database, HTTP or UI crate, so that
//! exactly the same rules run in the browser and on the server.

pub mod api;
pub mod call;
pub mod egress;
pub mod integration;
pub mod phone;
pub mod rules;
pub mod settings;

pub use call::{CallDirection, CallEventType, CallStatus, FromWebhook};
pub use integration::{
    CallHandling, CallLists, CredentialMethod, ExtensionEntry, ExtensionMap, IntegrationSettings,
    IntegrationSettingsView, KnownIncoming, LeadPlacement, ListSource, MissedCall, OutgoingToNewNumber, PopupAudience,
    ProviderSystem, StoredSecret, TaskResponsible, UnknownCallerEntity, UnknownIncoming, UnmappedCalls, UnsortedAccept,
    ValidationContext, VoipCredentials, VoipCredentialsView, WebhookEndpoint, WidgetBehaviour,
};
pub use settings::{FieldError, ValidationCode};
