//! The pipeline: the request and reply types every stage sees, and the stage API.
//!
//! Every stage is a `tower::Layer` over [`McpService`], written as a [`Stage`] (see
//! [`stage`] for the API and a runnable example); the stages themselves and the
//! builder of the YAML list live in `layers`. The first stage in the list is the
//! outermost: it sees the request first and the reply last. Outermost of all, the
//! pipeline links calls ([`links`]): the rounds of a multi-round-trip call share a
//! [`CallId`], and a client's response names the server-to-client request it answers.

mod change;
mod control;
mod endpoints;
mod lifecycle;
pub mod links;
mod refusal;
mod request;
mod service;
mod shared;
pub mod stage;

pub use crate::reply::{McpReply, MessageStream, Observed, Outcome, ReplyBody};
pub use change::{Change, ChangeObserver, ChangeObservers};
pub use control::{AdminCall, AdminReply, StageControl, StageControls};
pub use endpoints::{Document, Endpoints};
pub use lifecycle::{Lifecycle, Lifecycles};
pub use refusal::{Refusal, RefusalObserver, RefusalObservers};
pub use request::{AccessNote, CallId, McpRequest, Principal, RequestContext, RequestKind, ServerRequest, Transport};
pub use service::McpService;
pub(crate) use service::Start;
pub use shared::Shared;
pub use stage::{
    CallEnd, CallInfo, Carrier, Direction, Flow, LaterVerdict, MessageContext, ReplyStart, Stage, StageLayer,
    StageService, Verdict,
};
