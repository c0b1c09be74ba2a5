//! `/v1/auth/…`: sign-up, confirmation, sign-in (with the second factor), sign-out, sessions,
//! password change and reset, magic links, TOTP enrolment and backup codes, invitations.
//!
//! Every flow answers an unknown email exactly as a known one and spends the same hashing
//! work. Outcomes are recorded by [`crate::auth::events`].

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Duration;
use rampart_core::{Email, ErrorCode, PersonName, Plan, Secret, SessionId, UserId};
use rampart_crypto::random::RandomError;
use rampart_jobs::kinds::account_mail::AccountMailKind;
use rampart_store::identity::{
    LockMail, LockScope, NewSession, SecondFactorClaim, SessionStage, SigninClaim, SignupOutcome,
    TokenPurpose, UserAuth,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::account_mail;
use crate::auth::breach::Verdict;
use crate::auth::events::{RequestFacts, record};
use crate::auth::password::{HashError, PolicyError, Verified};
use crate::auth::session::{self, SessionUser};
use crate::auth::{Identity, secrets, token, totp};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{JsonBody, PathId};
use crate::state::AppState;

/// The one answer to a failed sign-in, whatever failed.
const SIGNIN_FAILED: &str = "sign-in failed: check the email and password (after repeated failures the account is locked for a while and its owner is emailed)";

fn identity(state: &AppState) -> ApiResult<Identity> {
    state.identity().cloned().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "sign-in is not configured on this server",
        )
    })
}

fn hash_error(e: HashError) -> ApiError {
    match e {
        HashError::Busy => ApiError::new(
            ErrorCode::Unavailable,
            "too many sign-ins in progress; retry in a few seconds",
        ),
        e @ (HashError::Failed | HashError::Threads(_)) => {
            tracing::error!(error = %e, "password hashing failed");
            ApiError::internal()
        }
    }
}

fn failed() -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, SIGNIN_FAILED)
}

/// Queues an account mail for the worker (see [`crate::auth::account_mail`]); a request never
/// waits for the transport. An error here is the database's, and fails the request.
async fn queue_mail(state: &AppState, user: UserId, mail: AccountMailKind) -> ApiResult<()> {
    account_mail::enqueue(state.jobs(), user, mail)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "could not queue an account mail");
            ApiError::internal()
        })
}

/// Queues a notice about a change already made: failing to queue it must not turn the change's
/// answer into an error, so the failure is logged for the operator.
async fn notify(state: &AppState, user: UserId, mail: AccountMailKind) {
    if let Err(e) = account_mail::enqueue(state.jobs(), user, mail).await {
        tracing::error!(error = %e, "could not queue an account notice");
    }
}

/// [`notify`] after the answer: a mail only some outcomes send must not show in their timing.
fn notify_later(state: &AppState, user: UserId, mail: AccountMailKind) {
    use tracing::Instrument;
    let state = state.clone();
    tokio::spawn(async move { notify(&state, user, mail).await }.in_current_span());
}

/// Checks policy and breach lists; the error names the `password` field (or `field`).
async fn acceptable_password(identity: &Identity, field: &str, password: &str) -> ApiResult<()> {
    identity
        .settings()
        .password
        .check(password)
        .map_err(|e| ApiError::invalid(field, e.to_string()))?;
    match identity.breach().check(password).await {
        Verdict::Clean => Ok(()),
        Verdict::Breached => Err(ApiError::invalid(field, PolicyError::Breached.to_string())),
        Verdict::Unavailable => Err(ApiError::new(
            ErrorCode::Unavailable,
            PolicyError::CheckUnavailable.to_string(),
        )),
    }
}

/// Queues the mail carrying a `purpose` link; the worker mints its token when it sends it.
async fn mail_token(
    state: &AppState,
    user: &UserAuth,
    purpose: TokenPurpose,
    browser_hash: Option<&str>,
) -> ApiResult<()> {
    let mail = match purpose {
        TokenPurpose::Confirm => AccountMailKind::ConfirmEmail,
        TokenPurpose::Reset => AccountMailKind::PasswordReset,
        TokenPurpose::MagicLink => AccountMailKind::MagicLink {
            browser_hash: browser_hash.map(str::to_owned),
        },
    };
    queue_mail(state, user.id, mail).await
}

/// A new session: the cookie header, the CSRF token and the session id.
struct Started {
    cookie: HeaderValue,
    csrf: Secret<String>,
    id: SessionId,
}

async fn start_session(
    state: &AppState,
    identity: &Identity,
    user: UserId,
    stage: SessionStage,
    facts: &RequestFacts,
    replaces: Option<SessionId>,
) -> ApiResult<Started> {
    let now = state.clock().now();
    let settings = identity.settings();
    let (absolute, idle) = match stage {
        SessionStage::Active => (
            now + Duration::hours(settings.session_absolute_hours),
            now + Duration::minutes(settings.session_idle_minutes),
        ),
        SessionStage::SecondFactor => {
            let t = now + Duration::minutes(settings.second_factor_minutes);
            (t, t)
        }
    };
    let minted = token::mint()?;
    let csrf = session::csrf_for(&minted.token);
    let new = NewSession {
        user,
        token_hash: minted.hash.clone(),
        csrf_hash: token::hash(csrf.expose()),
        stage,
        idle_expires_at: idle.min(absolute),
        absolute_expires_at: absolute,
        client_ip: facts.client_ip.clone(),
        user_agent: facts.user_agent.clone(),
    };
    let id = state.store().create_session(&new, replaces, now).await?;
    Ok(Started {
        cookie: session::set_cookie(identity, &minted.token, absolute - now),
        csrf,
        id,
    })
}

/// The session the request's cookie names, whatever its stage.
async fn current_session(
    state: &AppState,
    identity: &Identity,
    facts: &RequestFacts,
) -> ApiResult<Option<rampart_store::identity::SessionRecord>> {
    let Some(t) = session::presented(identity, &facts.headers) else {
        return Ok(None);
    };
    Ok(state
        .store()
        .session_by_token(&token::hash(t.expose()), state.clock().now())
        .await?)
}

/// The response with a `Set-Cookie`; `Cache-Control: no-store` comes from the edge headers,
/// as on every response without a cache policy of its own.
fn with_cookie(mut response: Response, cookie: HeaderValue) -> Response {
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

fn parse_email(raw: &str) -> ApiResult<Email> {
    Email::parse(raw).map_err(|e| ApiError::invalid("email", e.to_string()))
}

/// `POST /v1/auth/signup`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupBody {
    email: String,
    password: Secret<String>,
    name: String,
    org_name: String,
}

/// `POST /v1/auth/signup`: creates the user, organization and first workspace and mails a
/// confirmation link; an address that already has an account gets a mail saying so instead.
/// The answer is the same either way.
pub async fn signup(
    State(state): State<AppState>,
    facts: RequestFacts,
    JsonBody(body): JsonBody<SignupBody>,
) -> ApiResult<Response> {
    let identity = identity(&state)?;
    if !identity.settings().signup_enabled {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "sign-up is closed on this server",
        ));
    }
    let email = parse_email(&body.email)?;
    if let Err(refused) = mail_allowed(&state, email.as_str(), &facts, "auth.signup").await {
        return Ok(refused);
    }
    let name =
        PersonName::parse(&body.name).map_err(|e| ApiError::invalid("name", e.to_string()))?;
    let org_name = body.org_name.trim();
    if org_name.is_empty()
        || org_name.chars().count() > 100
        || org_name.chars().any(char::is_control)
    {
        return Err(ApiError::invalid("org_name", "must be 1 to 100 characters"));
    }
    acceptable_password(&identity, "password", body.password.expose()).await?;
    let hash = identity
        .hasher()
        .hash(&body.password)
        .await
        .map_err(hash_error)?;
    let event = facts.event(
        None,
        "auth.signup",
        202,
        None,
        &json!({"email": email.as_str(), "org_name": org_name}),
    );
    let outcome = state
        .store()
        .signup(
            &email,
            name.as_str(),
            &hash,
            org_name,
            Plan::Free,
            state.clock().now(),
            event,
        )
        .await?;
    match outcome {
        SignupOutcome::Created { user, .. } => {
            if let Some(u) = state.store().user_auth(user).await? {
                mail_token(&state, &u, TokenPurpose::Confirm, None).await?;
            }
        }
        SignupOutcome::Replaced(user) => {
            // A new link for this sign-up; it supersedes the earlier one, which was mailed for a
            // password this sign-up has replaced.
            if let Some(u) = state.store().user_auth(user).await? {
                mail_token(&state, &u, TokenPurpose::Confirm, None).await?;
            }
            record(
                &state,
                user,
                facts.event(
                    Some(user),
                    "auth.signup",
                    202,
                    None,
                    &json!({"outcome": "replaced_unconfirmed"}),
                ),
            )
            .await;
        }
        SignupOutcome::Existing(user) => match state.store().user_auth(user).await? {
            Some(u) if u.email_confirmed_at.is_none() => {
                mail_token(&state, &u, TokenPurpose::Confirm, None).await?;
            }
            Some(u) => queue_mail(&state, u.id, AccountMailKind::AlreadyRegistered).await?,
            None => {}
        },
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "confirmation_sent", "message": "check your email to confirm the address"})),
    )
        .into_response())
}

/// A body holding one emailed token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    token: Secret<String>,
}

fn bad_link() -> ApiError {
    ApiError::invalid("token", "this link is invalid, expired or already used")
}

/// `POST /v1/auth/confirm`
pub async fn confirm(
    State(state): State<AppState>,
    facts: RequestFacts,
    JsonBody(body): JsonBody<TokenBody>,
) -> ApiResult<Json<Value>> {
    identity(&state)?;
    let now = state.clock().now();
    let user = state
        .store()
        .consume_auth_token(
            TokenPurpose::Confirm,
            &token::hash(body.token.expose()),
            None,
            now,
        )
        .await?
        .ok_or_else(bad_link)?;
    state.store().confirm_email(user, now).await?;
    record(
        &state,
        user,
        facts.event(Some(user), "auth.confirm", 200, None, &json!({})),
    )
    .await;
    Ok(Json(json!({"status": "confirmed"})))
}

/// `POST /v1/auth/signin` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigninBody {
    email: String,
    password: Secret<String>,
}

fn signin_event(
    facts: &RequestFacts,
    user: UserId,
    status: u16,
    reason: &str,
) -> rampart_store::audit::NewEvent {
    let code = (status >= 400).then_some(if status == 401 {
        ErrorCode::Unauthenticated
    } else {
        ErrorCode::Forbidden
    });
    facts.event(
        Some(user),
        "auth.signin",
        status,
        code,
        &json!({"outcome": reason}),
    )
}

/// Counts a password attempt before it is evaluated (issue 32, finding 9): on the account
/// from the request's source (its client address, an IPv6 /64) and on the account from
/// everywhere, each with its own threshold. An attacker's failures lock out their source, not
/// the owner elsewhere; past `lockout_account_threshold` failures from all sources together the
/// account's password is locked for everyone (NIST SP 800-63B's backstop), magic links still
/// passing.
async fn claim_password_attempt(
    state: &AppState,
    identity: &Identity,
    user: UserId,
    facts: &RequestFacts,
) -> ApiResult<SigninClaim> {
    let s = identity.settings();
    Ok(state
        .store()
        .claim_signin_attempt(
            user,
            &facts.source,
            s.lockout_threshold,
            s.lockout_account_threshold,
            state.clock().now(),
        )
        .await?)
}

fn locked_event(
    facts: &RequestFacts,
    user: UserId,
    action: &str,
    scope: LockScope,
) -> rampart_store::audit::NewEvent {
    facts.event(
        Some(user),
        action,
        401,
        Some(ErrorCode::Unauthenticated),
        &json!({"outcome": "locked", "scope": scope.as_str()}),
    )
}

/// After a wrong password: the source or the account may now be locked (for a time that
/// doubles with each lock in a row); a new lock is audited and mailed to the owner, at most
/// once per `lock_mail_every_minutes`, after the answer.
async fn password_failed(
    state: &AppState,
    identity: &Identity,
    user: &UserAuth,
    facts: &RequestFacts,
) -> ApiResult<()> {
    let s = identity.settings();
    let now = state.clock().now();
    let Some((scope, until)) = state
        .store()
        .signin_failed(
            user.id,
            &facts.source,
            s.lockout_threshold,
            s.lockout_account_threshold,
            Duration::minutes(s.lockout_minutes),
            Duration::minutes(s.lockout_max_minutes),
            now,
        )
        .await?
    else {
        return Ok(());
    };
    let threshold = match scope {
        LockScope::Source => s.lockout_threshold,
        LockScope::Account => s.lockout_account_threshold,
    };
    record(
        state,
        user.id,
        facts.event(
            Some(user.id),
            "auth.lockout",
            401,
            Some(ErrorCode::Unauthenticated),
            &json!({"scope": scope.as_str(), "failed_attempts": threshold, "locked_until": until}),
        ),
    )
    .await;
    if !state
        .store()
        .claim_lock_mail(
            user.id,
            LockMail::Password,
            Duration::minutes(s.lock_mail_every_minutes),
            now,
        )
        .await?
    {
        return Ok(());
    }
    notify_later(
        state,
        user.id,
        AccountMailKind::PasswordLocked {
            scope,
            failed: threshold,
            until,
        },
    );
    Ok(())
}

/// `POST /v1/auth/signin`: a session, or a pending second-factor step.
pub async fn signin(
    State(state): State<AppState>,
    facts: RequestFacts,
    JsonBody(body): JsonBody<SigninBody>,
) -> ApiResult<Response> {
    let identity = identity(&state)?;
    let hasher = identity.hasher();
    let user = match Email::parse(&body.email) {
        Ok(email) => state.store().user_by_email(&email).await?,
        Err(_) => None,
    };
    let Some(user) = user else {
        hasher.waste(&body.password).await.map_err(hash_error)?;
        tracing::info!(
            email = %rampart_audit::redact::pseudonym(&body.email),
            "sign-in for an unknown email"
        );
        return Err(failed());
    };
    if user.disabled_at.is_some() {
        hasher.waste(&body.password).await.map_err(hash_error)?;
        record(
            &state,
            user.id,
            signin_event(&facts, user.id, 401, "disabled"),
        )
        .await;
        return Err(failed());
    }
    if let SigninClaim::Locked(scope) =
        claim_password_attempt(&state, &identity, user.id, &facts).await?
    {
        hasher.waste(&body.password).await.map_err(hash_error)?;
        record(
            &state,
            user.id,
            locked_event(&facts, user.id, "auth.signin", scope),
        )
        .await;
        return Err(failed());
    }
    let verdict = hasher
        .verify(&body.password, user.password_hash.as_deref())
        .await
        .map_err(hash_error)?;
    if verdict == Verified::No {
        password_failed(&state, &identity, &user, &facts).await?;
        record(
            &state,
            user.id,
            signin_event(&facts, user.id, 401, "wrong_password"),
        )
        .await;
        return Err(failed());
    }
    state
        .store()
        .signin_succeeded(user.id, &facts.source)
        .await?;
    if let (Verified::YesRehash(new), Some(old)) = (&verdict, user.password_hash.as_deref()) {
        state.store().rehash_password(user.id, old, new).await?;
    }
    if user.email_confirmed_at.is_none() {
        // The fresh link counts against the address's mail limit too; past it, none is sent.
        if crate::http::limits::per_email(
            state.limiter(),
            state.limits(),
            &limit_address(&user.email),
        )
        .await
        .is_ok()
        {
            mail_token(&state, &user, TokenPurpose::Confirm, None).await?;
        }
        record(
            &state,
            user.id,
            signin_event(&facts, user.id, 403, "email_unconfirmed"),
        )
        .await;
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "confirm your email address first; a new confirmation link was sent",
        ));
    }
    finish_first_factor(&state, &identity, &user, &facts, "password").await
}

/// After the first factor: a full session, or a pending one when TOTP is on. Any session the
/// request already carried is replaced (the token rotates at sign-in).
async fn finish_first_factor(
    state: &AppState,
    identity: &Identity,
    user: &UserAuth,
    facts: &RequestFacts,
    method: &str,
) -> ApiResult<Response> {
    let previous = current_session(state, identity, facts).await?.map(|s| s.id);
    let stage = if user.totp_enabled {
        SessionStage::SecondFactor
    } else {
        SessionStage::Active
    };
    let started = start_session(state, identity, user.id, stage, facts, previous).await?;
    let outcome = match stage {
        SessionStage::Active => "signed_in",
        SessionStage::SecondFactor => "second_factor_required",
    };
    record(
        state,
        user.id,
        facts.event(
            Some(user.id),
            "auth.signin",
            200,
            None,
            &json!({"outcome": outcome, "method": method}),
        ),
    )
    .await;
    let body = match stage {
        SessionStage::Active => json!({
            "status": outcome,
            "user": {"id": user.id, "email": user.email, "name": user.name},
            "session_id": started.id,
            "csrf_token": started.csrf.expose(),
        }),
        SessionStage::SecondFactor => {
            json!({"status": outcome, "methods": ["totp", "backup_code"]})
        }
    };
    Ok(with_cookie(Json(body).into_response(), started.cookie))
}

/// `POST /v1/auth/signin/2fa` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeBody {
    code: Secret<String>,
}

/// A backup code's stored form: SHA-256 over a label, the user and the normalized code.
fn backup_code_hash(user: UserId, code: &str) -> String {
    let normalized: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    token::hash(&format!("rampart.backup-code.v1:{user}:{normalized}"))
}

/// Ten fresh backup codes and their hashes. Each is 24 characters of the RFC 4648 base32
/// alphabet from the OS CSPRNG (`xxxxxx-xxxxxx-xxxxxx-xxxxxx`, 120 bits): past ASVS V6.5.2's
/// 112 bits, so a plain SHA-256 suffices at rest, as for the 256-bit session tokens. A slow
/// password hash would add nothing against guessing 2^120 and would cost ten argon2
/// verifications per code presented (the stored hashes cannot be looked up by a salted hash).
fn new_backup_codes(user: UserId) -> Result<(Vec<String>, Vec<String>), RandomError> {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let codes = (0..10)
        .map(|_| {
            let raw = rampart_crypto::random::string_from(ALPHABET, 24)?;
            Ok(raw
                .as_bytes()
                .chunks(6)
                .map(|g| String::from_utf8_lossy(g).into_owned())
                .collect::<Vec<_>>()
                .join("-"))
        })
        .collect::<Result<Vec<String>, RandomError>>()?;
    let hashes = codes.iter().map(|c| backup_code_hash(user, c)).collect();
    Ok((codes, hashes))
}

/// Checks a TOTP code or a backup code for `user`, consuming what it uses.
async fn second_factor_ok(
    state: &AppState,
    user: UserId,
    code: &str,
) -> ApiResult<Option<&'static str>> {
    let now = state.clock().now();
    let digits = code.trim();
    if digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()) {
        let Some(sealed) = state.store().totp_secret(user, false).await? else {
            return Ok(None);
        };
        let secret = secrets::open(state, user, "totp_secret", &sealed).await?;
        let unix = u64::try_from(now.timestamp()).unwrap_or(0);
        let Some(step) = totp::matching_step(&secret, digits, unix) else {
            return Ok(None);
        };
        // A code already used (this step or a later one) is refused: replay protection.
        return Ok(state
            .store()
            .claim_totp_step(user, step)
            .await?
            .then_some("totp"));
    }
    let hash = backup_code_hash(user, code);
    Ok(state
        .store()
        .consume_backup_code(user, &hash, now)
        .await?
        .then_some("backup_code"))
}

fn second_factor_locked(until: chrono::DateTime<chrono::Utc>) -> ApiError {
    ApiError::new(
        ErrorCode::Unauthenticated,
        format!(
            "two-factor sign-in is locked after too many wrong codes, until {} UTC; the account's owner was emailed",
            until.format("%Y-%m-%d %H:%M")
        ),
    )
}

/// A person's second factor was just locked: audited, and the owner mailed (at most once per
/// `lock_mail_every_minutes`). Whoever guessed codes knew the password.
async fn second_factor_lockout(
    state: &AppState,
    identity: &Identity,
    user: UserId,
    until: chrono::DateTime<chrono::Utc>,
    facts: &RequestFacts,
) -> ApiResult<()> {
    let settings = identity.settings();
    record(
        state,
        user,
        facts.event(
            Some(user),
            "auth.second_factor_lockout",
            401,
            Some(ErrorCode::Unauthenticated),
            &json!({"failed_codes": settings.second_factor_user_max_failures, "locked_until": until}),
        ),
    )
    .await;
    let now = state.clock().now();
    if !state
        .store()
        .claim_lock_mail(
            user,
            LockMail::SecondFactor,
            Duration::minutes(settings.lock_mail_every_minutes),
            now,
        )
        .await?
    {
        return Ok(());
    }
    notify_later(
        state,
        user,
        AccountMailKind::SecondFactorLocked {
            failed: settings.second_factor_user_max_failures,
            until,
        },
    );
    Ok(())
}

/// `POST /v1/auth/signin/2fa`: completes a sign-in with a TOTP or backup code; the pending
/// session is replaced by a new one (the token rotates).
pub async fn signin_second_factor(
    State(state): State<AppState>,
    facts: RequestFacts,
    JsonBody(body): JsonBody<CodeBody>,
) -> ApiResult<Response> {
    let identity = identity(&state)?;
    let pending = current_session(&state, &identity, &facts)
        .await?
        .filter(|s| s.stage == SessionStage::SecondFactor)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthenticated,
                "sign in with your password first",
            )
        })?;
    let user = pending.user;
    let settings = identity.settings();
    let now = state.clock().now();
    let refused = |outcome: &str| {
        facts.event(
            Some(user),
            "auth.signin_2fa",
            401,
            Some(ErrorCode::Unauthenticated),
            &json!({"outcome": outcome}),
        )
    };
    // Counted before the code is checked, on the pending session and on the person, so that
    // parallel guesses cannot check more codes than either allows.
    match state
        .store()
        .claim_second_factor_attempt(
            pending.id,
            user,
            settings.second_factor_max_failures,
            settings.second_factor_user_max_failures,
            now,
        )
        .await?
    {
        SecondFactorClaim::Counted(_) => {}
        SecondFactorClaim::SessionExhausted => {
            record(&state, user, refused("too_many_attempts")).await;
            return Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "too many wrong codes for this sign-in: sign in again",
            ));
        }
        SecondFactorClaim::Locked(until) => {
            record(&state, user, refused("locked")).await;
            return Err(second_factor_locked(until));
        }
    }
    let Some(kind) = second_factor_ok(&state, user, body.code.expose()).await? else {
        let failure = state
            .store()
            .second_factor_failed(
                pending.id,
                user,
                settings.second_factor_max_failures,
                settings.second_factor_user_max_failures,
                Duration::minutes(settings.second_factor_lockout_minutes),
                Duration::minutes(settings.lockout_max_minutes),
                now,
            )
            .await?;
        record(
            &state,
            user,
            facts.event(
                Some(user),
                "auth.signin_2fa",
                401,
                Some(ErrorCode::Unauthenticated),
                &json!({"outcome": "wrong_code", "session_ended": failure.session_ended}),
            ),
        )
        .await;
        if let Some(until) = failure.locked_until {
            second_factor_lockout(&state, &identity, user, until, &facts).await?;
            return Err(second_factor_locked(until));
        }
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "that code is not valid (codes work once; after too many failures sign in again)",
        ));
    };
    state.store().second_factor_passed(user).await?;
    let started = start_session(
        &state,
        &identity,
        user,
        SessionStage::Active,
        &facts,
        Some(pending.id),
    )
    .await?;
    let left = state.store().backup_codes_left(user).await?;
    record(
        &state,
        user,
        facts.event(
            Some(user),
            "auth.signin_2fa",
            200,
            None,
            &json!({"method": kind}),
        ),
    )
    .await;
    let u = state
        .store()
        .user_auth(user)
        .await?
        .ok_or_else(ApiError::internal)?;
    let body = json!({
        "status": "signed_in",
        "user": {"id": u.id, "email": u.email, "name": u.name},
        "session_id": started.id,
        "csrf_token": started.csrf.expose(),
        "backup_codes_left": left,
    });
    Ok(with_cookie(Json(body).into_response(), started.cookie))
}

/// `POST /v1/auth/signout`
pub async fn signout(
    State(state): State<AppState>,
    Extension(me): Extension<SessionUser>,
    facts: RequestFacts,
) -> ApiResult<Response> {
    let identity = identity(&state)?;
    state
        .store()
        .end_session(me.user, me.session, "signed_out", state.clock().now())
        .await?;
    record(
        &state,
        me.user,
        facts.event(
            Some(me.user),
            "auth.session_end",
            204,
            None,
            &json!({"session": me.session, "reason": "signed_out"}),
        ),
    )
    .await;
    Ok(with_cookie(
        StatusCode::NO_CONTENT.into_response(),
        session::clear_cookie(&identity),
    ))
}

/// `GET /v1/auth/me`: who is signed in, and the CSRF token for changes.
pub async fn me(
    State(state): State<AppState>,
    Extension(me): Extension<SessionUser>,
) -> ApiResult<Json<Value>> {
    let u = state
        .store()
        .user_auth(me.user)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let orgs = state.store().user_orgs(me.user).await?;
    Ok(Json(json!({
        "user": {"id": u.id, "email": u.email, "name": u.name, "totp_enabled": u.totp_enabled},
        "two_factor_required": me.record.two_factor_required,
        "session": {"id": me.session, "expires_at": me.record.absolute_expires_at, "idle_expires_at": me.record.idle_expires_at},
        "organizations": orgs.iter().map(|(o, w)| json!({"id": o, "workspace_id": w})).collect::<Vec<_>>(),
        "csrf_token": session::csrf_for(&me.token).expose(),
    })))
}

/// `GET /v1/auth/sessions`
pub async fn sessions(
    State(state): State<AppState>,
    Extension(me): Extension<SessionUser>,
) -> ApiResult<Json<Value>> {
    let list = state
        .store()
        .list_sessions(me.user, state.clock().now())
        .await?;
    let data: Vec<Value> = list
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(s).unwrap_or_default();
            v["current"] = json!(s.id == me.session);
            v
        })
        .collect();
    Ok(Json(json!({"data": data})))
}

/// `DELETE /v1/auth/sessions/{id}`: ends one of your own sessions.
pub async fn end_session(
    State(state): State<AppState>,
    Extension(me): Extension<SessionUser>,
    facts: RequestFacts,
    PathId(id): PathId<SessionId>,
) -> ApiResult<StatusCode> {
    if !state
        .store()
        .end_session(me.user, id, "ended_by_user", state.clock().now())
        .await?
    {
        return Err(ApiError::not_found());
    }
    record(
        &state,
        me.user,
        facts.event(
            Some(me.user),
            "auth.session_end",
            204,
            None,
            &json!({"session": id, "reason": "ended_by_user"}),
        ),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/auth/password` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordBody {
    current_password: Secret<String>,
    new_password: Secret<String>,
}

/// Checks a fresh password for a signed-in user (sensitive changes need one).
async fn fresh_password(
    state: &AppState,
    identity: &Identity,
    user: UserId,
    password: &Secret<String>,
    facts: &RequestFacts,
    action: &str,
) -> ApiResult<UserAuth> {
    let u = state
        .store()
        .user_auth(user)
        .await?
        .ok_or_else(ApiError::not_found)?;
    // Counted like a sign-in, so that a stolen session cannot guess the password here.
    if let SigninClaim::Locked(scope) = claim_password_attempt(state, identity, user, facts).await?
    {
        identity
            .hasher()
            .waste(password)
            .await
            .map_err(hash_error)?;
        record(state, user, locked_event(facts, user, action, scope)).await;
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "too many wrong passwords: password checks are locked for a while (the owner was emailed)",
        ));
    }
    let verdict = identity
        .hasher()
        .verify(password, u.password_hash.as_deref())
        .await
        .map_err(hash_error)?;
    if verdict == Verified::No {
        password_failed(state, identity, &u, facts).await?;
        record(
            state,
            user,
            facts.event(
                Some(user),
                action,
                401,
                Some(ErrorCode::Unauthenticated),
                &json!({"outcome": "wrong_password"}),
            ),
        )
        .await;
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "the password is not correct",
        ));
    }
    state.store().signin_succeeded(user, &facts.source).await?;
    Ok(u)
}

/// `POST /v1/auth/password`: needs the current password; ends every other session.
pub async fn change_password(
    State(state): State<AppState>,
    Extension(me): Extension<SessionUser>,
    facts: RequestFacts,
    JsonBody(body): JsonBody<ChangePasswordBody>,
) -> ApiResult<Json<Value>> {
    let identity = identity(&state)?;
    let u = fresh_password(
        &state,
        &identity,
        me.user,
        &body.current_password,
        &facts,
        "auth.password_change",
    )
    .await?;
    acceptable_password(&identity, "new_password", body.new_password.expose()).await?;
    let hash = identity
        .hasher()
        .hash(&body.new_password)
        .await
        .map_err(hash_error)?;
    let ended = state
        .store()
        .set_password(
            me.user,
            &hash,
            Some(me.session),
            "password_changed",
            state.clock().now(),
        )
        .await?;
    record(
        &state,
        me.user,
        facts.event(
            Some(me.user),
            "auth.password_change",
            200,
            None,
            &json!({"sessions_ended": ended}),
        ),
    )
    .await;
    notify(&state, u.id, AccountMailKind::PasswordChanged).await;
    Ok(Json(
        json!({"status": "password_changed", "sessions_ended": ended}),
    ))
}

/// A body holding one email address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailBody {
    email: String,
}

async fn mail_if_known(
    state: &AppState,
    raw: &str,
    purpose: TokenPurpose,
    facts: &RequestFacts,
    action: &str,
    browser_hash: Option<&str>,
) -> ApiResult<()> {
    let user = match Email::parse(raw) {
        Ok(email) => state.store().user_by_email(&email).await?,
        Err(_) => None,
    };
    match user {
        Some(u) if u.disabled_at.is_none() => {
            mail_token(state, &u, purpose, browser_hash).await?;
            record(
                state,
                u.id,
                facts.event(Some(u.id), action, 202, None, &json!({})),
            )
            .await;
        }
        _ => {
            tracing::info!(email = %rampart_audit::redact::pseudonym(raw), action, "link requested for an unknown or disabled email")
        }
    }
    Ok(())
}

/// Starts [`mail_if_known`] after the answer instead of before it: looking the address up,
/// storing a token, mailing and recording take time only when the address has an account, so
/// doing them first would tell by the answer's timing whether it has one (issue 32, finding 8).
/// Every address takes this same path. The lookup runs in a task of its own, in the request's
/// span, and queues the mail as a durable job: from there a restart or an SMTP outage delays
/// the link and loses none (only a crash in the milliseconds between the answer and the queue
/// can).
fn mail_later(
    state: &AppState,
    raw: String,
    purpose: TokenPurpose,
    facts: RequestFacts,
    action: &'static str,
    browser_hash: Option<String>,
) {
    use tracing::Instrument;
    let state = state.clone();
    tokio::spawn(
        async move {
            if let Err(e) = mail_if_known(
                &state,
                &raw,
                purpose,
                &facts,
                action,
                browser_hash.as_deref(),
            )
            .await
            {
                tracing::error!(code = e.code.as_str(), error = %e.message, action, "could not send a requested link");
            }
        }
        .in_current_span(),
    );
}

/// The address a per-address limit counts: normalized when it parses, else as typed.
fn limit_address(raw: &str) -> String {
    Email::parse(raw).map_or_else(|_| raw.trim().to_lowercase(), |e| e.normalized().to_owned())
}

/// Applies the per-address mail limit (issue 31, finding 5). A refusal is answered at once, the
/// same for every address; recording it happens afterwards (like [`mail_later`]): in the
/// ledgers of the address's account, at most once a minute per address, or as a log line when
/// there is no account.
async fn mail_allowed(
    state: &AppState,
    raw: &str,
    facts: &RequestFacts,
    action: &'static str,
) -> Result<(), Response> {
    let address = limit_address(raw);
    let Err(refusal) =
        crate::http::limits::per_email(state.limiter(), state.limits(), &address).await
    else {
        return Ok(());
    };
    use tracing::Instrument;
    let (state, facts) = (state.clone(), facts.clone());
    let raw = raw.to_owned();
    tokio::spawn(
        async move {
            let pseudonym = rampart_audit::redact::pseudonym(&raw);
            if !crate::http::limits::first_refusal_this_minute(state.limiter(), &address).await {
                tracing::info!(email = %pseudonym, action, "mail to this address is rate limited (already recorded this minute)");
                return;
            }
            let user = match Email::parse(&raw) {
                Ok(email) => state.store().user_by_email(&email).await.ok().flatten(),
                Err(_) => None,
            };
            match user {
                Some(u) => {
                    record(
                        &state,
                        u.id,
                        facts.event(
                            None,
                            action,
                            429,
                            Some(ErrorCode::RateLimited),
                            &json!({"outcome": "per_email_limit"}),
                        ),
                    )
                    .await;
                }
                None => {
                    tracing::info!(email = %pseudonym, action, "mail to this address is rate limited (no account)");
                }
            }
        }
        .in_current_span(),
    );
    Err(refusal)
}

fn link_sent() -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({"status": "sent_if_registered", "message": "if the address has an account, a link is on its way"})),
    )
        .into_response()
}

/// `POST /v1/auth/password/reset`: mails a single-use reset link (1 h) if the address has an
/// account; answers the same either way.
pub async fn request_reset(
    State(state): State<AppState>,
    facts: RequestFacts,
    JsonBody(body): JsonBody<EmailBody>,
) -> ApiResult<Response> {
    identity(&state)?; // 503 when sign-in is not configured here
    if let Err(refused) =
        mail_allowed(&state, &body.email, &facts, "auth.password_reset_request").await
    {
        return Ok(refused);
    }
    mail_later(
        &state,
        body.email,
        TokenPurpose::Reset,
        facts,
        "auth.password_reset_request",
        None,
    );
    Ok(link_sent())
}

/// `POST /v1/auth/password/reset/complete` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    token: Secret<String>,
    password: Secret<String>,
}

/// `POST /v1/auth/password/reset/complete`: sets the password and ends every session. It
/// does not sign in (the second factor is not bypassed: sign in as usual afterwards).
pub async fn complete_reset(
    State(state): State<AppState>,
    facts: RequestFacts,
    JsonBody(body): JsonBody<ResetBody>,
) -> ApiResult<Json<Value>> {
    let identity = identity(&state)?;
    // Check the new password before using up the link, so a refused password costs nothing.
    acceptable_password(&identity, "password", body.password.expose()).await?;
    let hash = identity
        .hasher()
        .hash(&body.password)
        .await
        .map_err(hash_error)?;
    let now = state.clock().now();
    let user = state
        .store()
        .consume_auth_token(
            TokenPurpose::Reset,
            &token::hash(body.token.expose()),
            None,
            now,
        )
        .await?
        .ok_or_else(bad_link)?;
    // The link proves the mailbox. An address never confirmed loses what its sign-up set
    // (second factor included) before the new password is set: whoever signed up may not own it.
    state
        .store()
        .confirm_by_other_proof(user, Some(&hash), now)
        .await?;
    let ended = state
        .store()
        .set_password(user, &hash, None, "password_reset", now)
        .await?;
    record(
        &state,
        user,
        facts.event(
            Some(user),
            "auth.password_reset",
            200,
            None,
            &json!({"sessions_ended": ended}),
        ),
    )
    .await;
    Ok(Json(
        json!({"status": "password_reset", "sessions_ended": ended}),
    ))
}

/// `POST /v1/auth/magic-link`: mails a single-use sign-in link (10 min) if the address has an
/// account; answers the same either way.
pub async fn request_magic_link(
    State(state): State<AppState>,
    facts: RequestFacts,
    JsonBody(body): JsonBody<EmailBody>,
) -> ApiResult<Response> {
    let identity = identity(&state)?;
    if let Err(refused) = mail_allowed(&state, &body.email, &facts, "auth.magic_link_request").await
    {
        return Ok(refused);
    }
    // Asked for by a browser: the link works only in that browser (a nonce in a cookie set on
    // this answer, its hash stored with the token). Set for every address alike.
    let binding = session::from_browser(&facts.headers)
        .then(token::mint)
        .transpose()?;
    let cookie = binding.as_ref().map(|b| {
        session::set_magic_cookie(
            &identity,
            &b.token,
            Duration::minutes(identity.settings().magic_link_minutes),
        )
    });
    mail_later(
        &state,
        body.email,
        TokenPurpose::MagicLink,
        facts,
        "auth.magic_link_request",
        binding.map(|b| b.hash),
    );
    Ok(match cookie {
        Some(c) => with_cookie(link_sent(), c),
        None => link_sent(),
    })
}

/// `POST /v1/auth/magic-link/consume`: signs in with a link (then the second factor, if on).
pub async fn consume_magic_link(
    State(state): State<AppState>,
    facts: RequestFacts,
    JsonBody(body): JsonBody<TokenBody>,
) -> ApiResult<Response> {
    let identity = identity(&state)?;
    let now = state.clock().now();
    // A link bound to the browser that asked for it works only with that browser's nonce.
    let browser =
        session::presented_magic(&identity, &facts.headers).map(|n| token::hash(n.expose()));
    let user = state
        .store()
        .consume_auth_token(
            TokenPurpose::MagicLink,
            &token::hash(body.token.expose()),
            browser.as_deref(),
            now,
        )
        .await?
        .ok_or_else(bad_link)?;
    let u = state.store().user_auth(user).await?.ok_or_else(bad_link)?;
    // A password lock does not apply: the link proves the mailbox, and the lock is about
    // guessing passwords (otherwise anyone could keep the owner out by failing on purpose).
    if u.disabled_at.is_some() {
        record(&state, user, signin_event(&facts, user, 401, "disabled")).await;
        return Err(failed());
    }
    // The link proves the mailbox. An address never confirmed loses what its sign-up set
    // (password, second factor, sessions): whoever signed up may not own it.
    let u = if state
        .store()
        .confirm_by_other_proof(user, None, now)
        .await?
    {
        state.store().user_auth(user).await?.ok_or_else(bad_link)?
    } else {
        u
    };
    let response = finish_first_factor(&state, &identity, &u, &facts, "magic_link").await?;
    Ok(if browser.is_some() {
        with_cookie(response, session::clear_magic_cookie(&identity))
    } else {
        response
    })
}

/// `POST /v1/auth/totp/enroll`: a new secret awaiting confirmation. Needs the current
/// password: whoever enrols decides which authenticator the account trusts from then on, so a
/// stolen session alone must not be enough.
pub async fn totp_enroll(
    State(state): State<AppState>,
    Extension(me): Extension<SessionUser>,
    facts: RequestFacts,
    JsonBody(body): JsonBody<PasswordBody>,
) -> ApiResult<Response> {
    let identity = identity(&state)?;
    let u = fresh_password(
        &state,
        &identity,
        me.user,
        &body.password,
        &facts,
        "auth.totp_enroll",
    )
    .await?;
    if u.totp_enabled {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "two-factor authentication is already on; turn it off first",
        ));
    }
    let secret = totp::new_secret()?;
    let (uri, b32) = totp::provisioning(&secret, &identity.settings().totp_issuer, &u.email)
        .map_err(|_| ApiError::internal())?;
    let svg = totp::qr_svg(&uri).map_err(|_| ApiError::internal())?;
    let sealed = secrets::seal(&state, me.user, "totp_pending_secret", &secret).await?;
    state.store().set_pending_totp(me.user, &sealed).await?;
    record(
        &state,
        me.user,
        facts.event(Some(me.user), "auth.totp_enroll", 200, None, &json!({})),
    )
    .await;
    Ok(Json(json!({"secret": b32, "otpauth_uri": uri, "qr_svg": svg})).into_response())
}

/// `POST /v1/auth/totp/confirm`: a valid code turns TOTP on; answers the backup codes, once.
/// Every other session of the user ends (they were opened without the new factor) and the
/// owner is mailed.
pub async fn totp_confirm(
    State(state): State<AppState>,
    Extension(me): Extension<SessionUser>,
    facts: RequestFacts,
    JsonBody(body): JsonBody<CodeBody>,
) -> ApiResult<Response> {
    identity(&state)?; // 503 when sign-in is not configured here
    let sealed = state
        .store()
        .totp_secret(me.user, true)
        .await?
        .ok_or_else(|| {
            ApiError::new(ErrorCode::Conflict, "start with POST /v1/auth/totp/enroll")
        })?;
    let secret = secrets::open(&state, me.user, "totp_pending_secret", &sealed).await?;
    let now = state.clock().now();
    let unix = u64::try_from(now.timestamp()).unwrap_or(0);
    let Some(step) = totp::matching_step(&secret, body.code.expose(), unix) else {
        record(
            &state,
            me.user,
            facts.event(
                Some(me.user),
                "auth.totp_enable",
                422,
                Some(ErrorCode::Invalid),
                &json!({}),
            ),
        )
        .await;
        return Err(ApiError::invalid(
            "code",
            "that code is not valid for the new secret; check the device's clock",
        ));
    };
    let active = secrets::seal(&state, me.user, "totp_secret", &secret).await?;
    let (codes, hashes) = new_backup_codes(me.user)?;
    if !state
        .store()
        .activate_totp(me.user, &sealed, &active, step, &hashes, now)
        .await?
    {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "the enrolment changed meanwhile; enrol again",
        ));
    }
    let ended = state
        .store()
        .end_user_sessions(me.user, Some(me.session), "second_factor_enabled", now)
        .await?;
    record(
        &state,
        me.user,
        facts.event(
            Some(me.user),
            "auth.totp_enable",
            200,
            None,
            &json!({"sessions_ended": ended}),
        ),
    )
    .await;
    notify(&state, me.user, AccountMailKind::TwoFactorEnabled).await;
    Ok(
        Json(json!({"status": "enabled", "backup_codes": codes, "sessions_ended": ended}))
            .into_response(),
    )
}

/// A body holding the current password.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    password: Secret<String>,
}

/// `POST /v1/auth/totp/backup-codes`: fresh password required; replaces every code.
pub async fn regenerate_backup_codes(
    State(state): State<AppState>,
    Extension(me): Extension<SessionUser>,
    facts: RequestFacts,
    JsonBody(body): JsonBody<PasswordBody>,
) -> ApiResult<Response> {
    let identity = identity(&state)?;
    let u = fresh_password(
        &state,
        &identity,
        me.user,
        &body.password,
        &facts,
        "auth.backup_codes_regenerate",
    )
    .await?;
    if !u.totp_enabled {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "two-factor authentication is off",
        ));
    }
    let (codes, hashes) = new_backup_codes(me.user)?;
    state
        .store()
        .replace_backup_codes(me.user, &hashes, state.clock().now())
        .await?;
    record(
        &state,
        me.user,
        facts.event(
            Some(me.user),
            "auth.backup_codes_regenerate",
            200,
            None,
            &json!({}),
        ),
    )
    .await;
    Ok(Json(json!({"backup_codes": codes})).into_response())
}

/// `DELETE /v1/auth/totp`: fresh password required; turns TOTP off.
pub async fn totp_disable(
    State(state): State<AppState>,
    Extension(me): Extension<SessionUser>,
    facts: RequestFacts,
    JsonBody(body): JsonBody<PasswordBody>,
) -> ApiResult<StatusCode> {
    let identity = identity(&state)?;
    let u = fresh_password(
        &state,
        &identity,
        me.user,
        &body.password,
        &facts,
        "auth.totp_disable",
    )
    .await?;
    state.store().disable_totp(me.user).await?;
    record(
        &state,
        me.user,
        facts.event(Some(me.user), "auth.totp_disable", 204, None, &json!({})),
    )
    .await;
    notify(&state, u.id, AccountMailKind::TwoFactorDisabled).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/auth/invitations/accept` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    token: Secret<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    password: Option<Secret<String>>,
}

/// `POST /v1/auth/invitations/accept`: joins the workspace; a new address also chooses a
/// password (the link proves the address, so it counts as confirmed). So does an address whose
/// sign-up was never confirmed: that sign-up's password, second factor and sessions are
/// cleared, since whoever made it may not own the address.
pub async fn accept_invitation(
    State(state): State<AppState>,
    facts: RequestFacts,
    JsonBody(body): JsonBody<AcceptBody>,
) -> ApiResult<Json<Value>> {
    let identity = identity(&state)?;
    let name = body
        .name
        .as_deref()
        .map(|n| PersonName::parse(n).map_err(|e| ApiError::invalid("name", e.to_string())))
        .transpose()?;
    let hash = match &body.password {
        Some(p) => {
            acceptable_password(&identity, "password", p.expose()).await?;
            Some(identity.hasher().hash(p).await.map_err(hash_error)?)
        }
        None => None,
    };
    let presented = body.token.expose();
    // `<workspace id>_<43-character secret>`; the secret itself may contain `_`.
    let split = presented
        .len()
        .checked_sub(44)
        .filter(|i| presented.is_char_boundary(*i));
    let workspace = split
        .filter(|i| presented.as_bytes().get(*i) == Some(&b'_'))
        .and_then(|i| presented[..i].parse::<rampart_core::WorkspaceId>().ok())
        .ok_or_else(bad_link)?;
    let event = facts.event(None, "member.accept", 200, None, &json!({}));
    let accepted = state
        .store()
        .accept_invitation(
            workspace,
            &token::hash(presented),
            name.as_ref().map(PersonName::as_str),
            hash.as_deref(),
            state.clock().now(),
            event,
        )
        .await
        .map_err(|e| match e {
            rampart_store::StoreError::NotFound(_) => ApiError::invalid(
                "password",
                "choose a password: this invitation sets up the account",
            ),
            other => other.into(),
        })?
        .ok_or_else(bad_link)?;
    Ok(Json(json!({
        "status": "joined",
        "user_id": accepted.user,
        "new_account": accepted.new_user,
        "organization_id": accepted.org,
        "workspace_id": accepted.workspace,
        "membership_id": accepted.membership,
        "role": accepted.role,
    })))
}
