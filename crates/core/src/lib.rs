//! Rampart's shared vocabulary. Nothing here knows about a database or HTTP: these are the
//! types every other room speaks, built so that the wrong thing is hard to express (an id of
//! one kind cannot be passed where another is expected; a tenant grant cannot be made without
//! an authorization decision).

pub mod audit;
pub mod clock;
pub mod contact;
pub mod error;
pub mod ids;
pub mod plan;
pub mod principal;
pub mod role;
pub mod secret;
pub mod text;

pub use clock::{Clock, ManualClock, SystemClock};
pub use contact::{
    ContactFields, ContactText, Email, FieldError, InvalidContact, PersonName, Phone, Tag, UsState,
};
pub use error::ErrorCode;
pub use ids::{
    ApiKeyId, AuthTokenId, ContactId, CredentialId, IdError, InvitationId, JobId, MembershipId,
    OrgId, SessionId, UserId, WorkspaceId,
};
pub use plan::Plan;
pub use principal::{
    AccessDenied, Actor, AuthMethod, EventActor, Membership, OperatorGrant, OrgGrant, Principal,
    TenantGrant,
};
pub use role::{Permission, Role};
pub use secret::Secret;
