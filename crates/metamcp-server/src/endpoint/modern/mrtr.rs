//! Multi round-trip requests (SEP-2322): a stateless call whose upstream asks the client for
//! input (sampling, elicitation, roots) is parked under an unguessable `requestState` and
//! answered over several HTTP requests, each ending with the call's answer or an
//! `input_required` result.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use metamcp_core::jsonrpc::{
    self, Envelope, INTERNAL_ERROR, INVALID_PARAMS, Kind, METHOD_NOT_FOUND, RESOURCE_NOT_FOUND,
};
use parking_lot::Mutex;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{INPUT_METHODS, PARKED_TIMEOUT};
use crate::auth::ClientId;
use crate::limits::{Exceeded, Limits};
use crate::relay::{Answerer, unguessable};
use crate::state::Gateway;

/// A stateless call whose upstream may ask the client for input while it runs.
#[derive(Debug)]
pub(super) struct Call {
    /// The id the relay binds the call's input requests to: only this call's retry can
    /// answer them (see `relay::Answerer::Call`).
    pub(super) call_id: Arc<str>,
    /// Whom the parked call counts against.
    pub(super) client: ClientId,
    pub(super) endpoint_id: String,
    pub(super) key_id: Option<String>,
    pub(super) method: String,
    pub(super) target: Option<String>,
    /// Everything the call's task produces (see [`Request::start`]).
    pub(super) rx: mpsc::Receiver<String>,
    /// Requests waiting for the client, by the relay's id (the `inputRequests` key) → the
    /// `{method, params}` object sent to the client.
    pub(super) pending: BTreeMap<String, String>,
}

impl Call {
    /// Hands the client's `inputResponses` to the upstream requests waiting for them; keys
    /// this call is not waiting for are ignored.
    pub(super) fn answer(&mut self, gw: &Gateway, responses: Vec<(String, Box<RawValue>)>) {
        for (key, value) in responses {
            if self.pending.remove(&key).is_none() {
                tracing::debug!(key, "input response for no waiting request ignored");
                continue;
            }
            let Ok(id) = RawValue::from_string(Value::from(key.as_str()).to_string()) else {
                continue;
            };
            let by = Answerer::Call(self.call_id.clone());
            let taken = gw.rt.relay.client_answer(&id, &by, Some(&value), None);
            tracing::debug!(key, taken, "input response relayed upstream");
        }
    }
}

/// Calls waiting for their client's retry, by `requestState`, and how many each client
/// has parked.
#[derive(Debug, Default)]
pub(super) struct Parked {
    calls: HashMap<String, Call>,
    per_client: HashMap<ClientId, usize>,
}

impl Parked {
    fn take(&mut self, state: &str) -> Option<Call> {
        let call = self.calls.remove(state)?;
        if let Some(n) = self.per_client.get_mut(&call.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_client.remove(&call.client);
            }
        }
        Some(call)
    }
}

/// The parked calls of this process.
static PARKED: LazyLock<Mutex<Parked>> = LazyLock::new(Mutex::default);

/// Parks a call until the client retries; returns its `requestState` (244 random bits), or
/// the bound that refused it (then the call is dropped, which cancels its upstream
/// request).
pub(super) fn park(call: Call, limits: &Limits) -> Result<String, Exceeded> {
    let state = format!("{}{}", unguessable(), unguessable());
    {
        let mut parked = PARKED.lock();
        if parked.calls.len() >= limits.parked_total {
            return Err(Exceeded::new(
                "METAMCP_MAX_PARKED",
                limits.parked_total,
                "Too many calls are waiting for client input on this gateway; try again later",
            ));
        }
        let mine = parked.per_client.entry(call.client.clone()).or_default();
        if *mine >= limits.parked_per_client {
            return Err(Exceeded::new(
                "METAMCP_MAX_PARKED_PER_CLIENT",
                limits.parked_per_client,
                "Too many of this client's calls are waiting for its input; answer or abandon them",
            ));
        }
        *mine += 1;
        parked.calls.insert(state.clone(), call);
    }
    let key = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(PARKED_TIMEOUT).await;
        // Dropping the call closes its channel: its task cancels the upstream request.
        if PARKED.lock().take(&key).is_some() {
            tracing::debug!("a call waiting for client input expired");
        }
    });
    Ok(state)
}

/// The parked call `state`, if it was parked for this endpoint, key, method and target.
/// A mismatch leaves it parked (a stranger cannot end someone else's call).
pub(super) fn unpark(
    state: &str,
    endpoint_id: &str,
    key_id: Option<&str>,
    method: &str,
    target: Option<&str>,
) -> Option<Call> {
    let mut parked = PARKED.lock();
    let call = parked.calls.get(state)?;
    let same_target = match (call.target.as_deref(), target) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    if call.endpoint_id != endpoint_id
        || call.key_id.as_deref() != key_id
        || call.method != method
        || !same_target
    {
        return None;
    }
    parked.take(state)
}

/// The HTTP request a call is being answered on.
#[derive(Debug)]
pub(super) struct Round {
    pub(super) id: Box<RawValue>,
    pub(super) method: String,
    pub(super) era2026: bool,
    pub(super) mrtr: bool,
    /// The token progress is delivered under on this request's SSE stream.
    pub(super) progress_token: Option<Value>,
    /// The client's declared capabilities (`clientCapabilities` keys) on this request.
    pub(super) capabilities: Vec<String>,
}

/// How one round of a call ends.
#[derive(Debug)]
pub(super) enum RoundEnd {
    /// The final JSON-RPC message for the client.
    Final(String),
    /// The upstream waits for the client's input.
    Input(Call),
}

/// Reads the call's messages until its answer arrives or it needs the client's input.
pub(super) async fn drive(
    gw: &Gateway,
    mut call: Call,
    round: &Round,
    out: Option<&mpsc::Sender<String>>,
) -> RoundEnd {
    // Requests the retry did not answer are asked again at once.
    if !call.pending.is_empty() {
        return RoundEnd::Input(call);
    }
    loop {
        let Some(msg) = call.rx.recv().await else {
            return RoundEnd::Final(jsonrpc::error(
                Some(&round.id),
                INTERNAL_ERROR,
                "The call ended without an answer (metamcp)",
                None,
            ));
        };
        if let Some(answer) = absorb(gw, &mut call, round, out, &msg) {
            return RoundEnd::Final(answer);
        }
        if !call.pending.is_empty() {
            // Requests sent together travel in one input_required result.
            while let Ok(msg) = call.rx.try_recv() {
                if let Some(answer) = absorb(gw, &mut call, round, out, &msg) {
                    return RoundEnd::Final(answer);
                }
            }
            if !call.pending.is_empty() {
                return RoundEnd::Input(call);
            }
        }
    }
}

/// Takes one message of the call's channel; returns the final message when it is the
/// call's answer.
pub(super) fn absorb(
    gw: &Gateway,
    call: &mut Call,
    round: &Round,
    out: Option<&mpsc::Sender<String>>,
    msg: &str,
) -> Option<String> {
    let env = Envelope::parse(msg.as_bytes()).ok()?;
    match env.kind() {
        Kind::Response => Some(finish(&env, round)),
        Kind::Request => {
            on_server_request(gw, call, round, &env);
            None
        }
        Kind::Notification => {
            match env.method() {
                "notifications/progress" => {
                    if let (Some(tx), Some(token)) = (out, &round.progress_token)
                        && let Some(m) = with_progress_token(msg, token)
                    {
                        // Like the session era: progress that finds no room is dropped.
                        let _ = tx.try_send(m);
                    }
                }
                // The upstream withdrew a request it sent: the client is not asked again.
                "notifications/cancelled" => {
                    let withdrawn = env.params.and_then(|p| jsonrpc::str_field(p, "requestId"));
                    if let Some(id) = withdrawn {
                        call.pending.remove(id.as_ref());
                    }
                }
                _ => {}
            }
            None
        }
        Kind::Invalid => None,
    }
}

/// A sampling/elicitation/roots request an upstream sent during the call: kept for the
/// client's `input_required` result, or — where MRTR does not apply — refused, so the
/// upstream does not wait for an answer that cannot come.
pub(super) fn on_server_request(gw: &Gateway, call: &mut Call, round: &Round, env: &Envelope<'_>) {
    let Some(id) = env.id else { return };
    let method = env.method();
    // why: upstreams see the gateway's capabilities, not this client's; a request the
    // client did not declare it can answer is refused here, as a direct server would not
    // have sent it.
    let declared = match method {
        "elicitation/create" => "elicitation",
        "sampling/createMessage" => "sampling",
        _ => "roots",
    };
    if round.mrtr
        && INPUT_METHODS.contains(&method)
        && round.capabilities.iter().any(|c| c == declared)
        && let Ok(key) = serde_json::from_str::<String>(id.get())
    {
        // SEP-2322 InputRequest: the request without jsonrpc and id.
        let mut request = json!({ "method": method }).to_string();
        if let Some(p) = env.params {
            request.pop();
            request.push_str(",\"params\":");
            request.push_str(p.get());
            request.push('}');
        }
        call.pending.insert(key, request);
        return;
    }
    let error = json!({
        "code": METHOD_NOT_FOUND,
        "message": format!(
            "{method}: the client cannot receive it during {} (stateless protocol; input \
             requests need 2026-07-28, one of tools/call, prompts/get, resources/read, and the \
             client's {declared} capability) (metamcp)",
            round.method
        ),
    })
    .to_string();
    if let Ok(error) = RawValue::from_string(error) {
        let by = Answerer::Call(call.call_id.clone());
        gw.rt.relay.client_answer(id, &by, None, Some(&error));
    }
}

/// `message` (a progress notification) with `params.progressToken` set to `token`.
pub(super) fn with_progress_token(message: &str, token: &Value) -> Option<String> {
    let mut v: Value = serde_json::from_str(message).ok()?;
    v.get_mut("params")?
        .as_object_mut()?
        .insert("progressToken".into(), token.clone());
    Some(v.to_string())
}

/// The final message of a round: parks the call when it needs input.
pub(super) fn settle(end: RoundEnd, round: &Round, limits: &Limits) -> String {
    match end {
        RoundEnd::Final(msg) => msg,
        RoundEnd::Input(call) => {
            let mut requests = String::from("{");
            for (i, (key, request)) in call.pending.iter().enumerate() {
                if i > 0 {
                    requests.push(',');
                }
                requests.push_str(&Value::from(key.as_str()).to_string());
                requests.push(':');
                requests.push_str(request);
            }
            requests.push('}');
            let n = call.pending.len();
            let state = match park(call, limits) {
                Ok(state) => state,
                Err(refused) => return refused.rpc_error(Some(&round.id)),
            };
            tracing::debug!(requests = n, "call waits for client input (input_required)");
            let result = format!(
                r#"{{"resultType":"input_required","inputRequests":{requests},"requestState":{}}}"#,
                Value::from(state)
            );
            jsonrpc::response(&round.id, &result)
        }
    }
}

pub(super) fn finish_str(out: &str, round: &Round) -> String {
    match Envelope::parse(out.as_bytes()) {
        Ok(env) => finish(&env, round),
        Err(_) => jsonrpc::error(
            Some(&round.id),
            INTERNAL_ERROR,
            "unreadable answer (metamcp)",
            None,
        ),
    }
}

/// The call's answer under this round's id, in the shape of the round's protocol version.
pub(super) fn finish(env: &Envelope<'_>, round: &Round) -> String {
    if let Some(result) = env.result {
        if round.era2026 {
            return jsonrpc::response(&round.id, &complete_result(result.get(), &round.method));
        }
        return jsonrpc::response(&round.id, result.get());
    }
    if let Some(error) = env.error {
        if round.era2026 {
            return jsonrpc::response_error_raw(Some(&round.id), &modern_error(error.get()));
        }
        return jsonrpc::response_error_raw(Some(&round.id), error.get());
    }
    jsonrpc::error(
        Some(&round.id),
        INTERNAL_ERROR,
        "empty answer (metamcp)",
        None,
    )
}

/// A 2026-07-28 result: `resultType: "complete"` (SEP-2322: servers MUST include it), and
/// on cacheable results the most conservative cache hints when the upstream gave none
/// (rmcp `ServerResult::fill_missing_cache_hints`: `ttlMs: 0`, `cacheScope: "private"`).
/// Only added fields; the rest passes byte for byte.
pub(super) fn complete_result(result: &str, method: &str) -> String {
    let Ok(fields) = serde_json::from_str::<HashMap<String, &RawValue>>(result) else {
        return result.to_owned();
    };
    let mut add = Vec::new();
    match fields.get("resultType").map(|v| v.get()) {
        None => add.push(r#""resultType":"complete""#),
        Some(r#""complete""#) => {}
        // Not a complete result: not cacheable either.
        Some(_) => return result.to_owned(),
    }
    let cacheable = matches!(
        method,
        "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
    );
    if cacheable {
        if !fields.contains_key("ttlMs") {
            add.push(r#""ttlMs":0"#);
        }
        if !fields.contains_key("cacheScope") {
            add.push(r#""cacheScope":"private""#);
        }
    }
    if add.is_empty() {
        return result.to_owned();
    }
    let Some(rest) = result.trim_start().strip_prefix('{') else {
        return result.to_owned();
    };
    let sep = if rest.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    format!("{{{}{sep}{rest}", add.join(","))
}

/// A 2026-07-28 error: resource-not-found is reported as invalid params, as rmcp's server
/// does for peers on that version.
pub(super) fn modern_error(error: &str) -> String {
    match serde_json::from_str::<Value>(error) {
        Ok(mut v) if v["code"] == RESOURCE_NOT_FOUND => {
            v["code"] = INVALID_PARAMS.into();
            v.to_string()
        }
        _ => error.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modern_results_say_they_are_complete_and_how_long_to_cache() {
        assert_eq!(
            complete_result(r#"{"tools":[]}"#, "tools/list"),
            r#"{"resultType":"complete","ttlMs":0,"cacheScope":"private","tools":[]}"#
        );
        assert_eq!(
            complete_result("{}", "tools/call"),
            r#"{"resultType":"complete"}"#
        );
        assert_eq!(
            complete_result(
                r#"{"resultType":"complete","ttlMs":5,"cacheScope":"public"}"#,
                "resources/read"
            ),
            r#"{"resultType":"complete","ttlMs":5,"cacheScope":"public"}"#
        );
        let err = modern_error(r#"{"code":-32002,"message":"nope"}"#);
        assert!(err.contains("-32602"), "{err}");
    }
}
