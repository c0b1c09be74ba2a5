//! The job kinds Rampart defines. A kind whose work needs the server (mail needs its transport
//! and templates) is declared here with its payload, and the server registers the handler, so
//! this crate knows no HTTP and no SMTP.

pub mod account_mail;
pub mod prune;
pub mod retention;
