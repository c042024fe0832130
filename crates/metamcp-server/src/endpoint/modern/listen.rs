//! `subscriptions/listen`: the stateless era's long-lived notification stream.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use metamcp_core::jsonrpc::{self, Envelope, INVALID_PARAMS, Kind};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{KEY_SERVER_INFO, KEY_SUBSCRIPTION_ID, Request, json_response, refuse, to_raw};
use crate::error::HttpError;
use crate::limits::Exceeded;
use crate::namespace;
use crate::relay::CallCtx;
use crate::session::{NewSession, SessionKind};
use crate::state::Gateway;

/// The notifications a listener asked for and the gateway accepted (rmcp
/// `SubscriptionFilter`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Filter {
    #[serde(default)]
    pub(super) tools_list_changed: Option<bool>,
    #[serde(default)]
    pub(super) prompts_list_changed: Option<bool>,
    #[serde(default)]
    pub(super) resources_list_changed: Option<bool>,
    #[serde(default)]
    pub(super) resource_subscriptions: Option<Vec<String>>,
}

impl Filter {
    fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (k, v) in [
            ("toolsListChanged", self.tools_list_changed),
            ("promptsListChanged", self.prompts_list_changed),
            ("resourcesListChanged", self.resources_list_changed),
        ] {
            if v == Some(true) {
                m.insert(k.into(), true.into());
            }
        }
        if let Some(uris) = self
            .resource_subscriptions
            .as_ref()
            .filter(|u| !u.is_empty())
        {
            m.insert("resourceSubscriptions".into(), json!(uris));
        }
        Value::Object(m)
    }

    /// Whether a fanned-out notification falls inside this filter.
    fn accepts(&self, method: &str, params: Option<&RawValue>) -> bool {
        match method {
            "notifications/tools/list_changed" => self.tools_list_changed == Some(true),
            "notifications/prompts/list_changed" => self.prompts_list_changed == Some(true),
            "notifications/resources/list_changed" => self.resources_list_changed == Some(true),
            "notifications/resources/updated" => {
                let uri = params.and_then(|p| jsonrpc::str_field(p, "uri"));
                match (uri, &self.resource_subscriptions) {
                    (Some(uri), Some(uris)) => uris.iter().any(|u| *u == *uri),
                    _ => false,
                }
            }
            _ => false,
        }
    }
}

/// Ends a listener's registration when its stream is dropped (client gone, or the end).
#[derive(Debug)]
pub(super) struct ListenerGuard {
    pub(super) gw: Arc<Gateway>,
    pub(super) session_id: String,
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        // The end hook releases what the listener held (its subscriptions).
        self.gw.sessions.remove(&self.session_id);
        tracing::info!("subscriptions/listen stream closed");
    }
}

/// `subscriptions/listen`: acknowledges the accepted filter, then relays the endpoint's
/// fanned-out notifications inside it, each with `_meta.subscriptionId` = the request's
/// id, until the client closes the stream; when the gateway ends it (shutdown), the final
/// `SubscriptionsListenResult` is sent.
pub(super) async fn listen(
    call: &Request<'_>,
    params: Option<&RawValue>,
    version: &str,
) -> Response {
    #[derive(Deserialize)]
    struct Params {
        notifications: Filter,
    }
    let Some(Ok(Params {
        notifications: requested,
    })) = params.map(|p| serde_json::from_str::<Params>(p.get()))
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            Some(call.id),
            INVALID_PARAMS,
            "Invalid params: subscriptions/listen needs params.notifications (a subscription filter)",
            None,
        );
    };
    let gw = call.gw;
    let requested_uris = requested.resource_subscriptions.unwrap_or_default();
    let limit = gw.opts.limits.subscriptions_per_session;
    if requested_uris.len() > limit {
        let refused = Exceeded::new(
            "METAMCP_MAX_SUBSCRIPTIONS_PER_SESSION",
            limit,
            "Too many resource subscriptions in one listen request",
        );
        return json_response(StatusCode::OK, refused.rpc_error(Some(call.id)));
    }
    // The listener counts as one of its client's sessions; it exists before anything is
    // subscribed upstream for it.
    let session = match gw.sessions.create(NewSession {
        kind: SessionKind::Listener,
        endpoint_id: &call.ep.id,
        key_id: call.principal.binding(),
        client: call.client.clone(),
        protocol_version: version,
    }) {
        Ok(s) => s,
        Err(refused) => return json_response(StatusCode::OK, refused.rpc_error(Some(call.id))),
    };
    // The gateway advertises listChanged on all three lists and resource subscriptions, so
    // what was requested is accepted — except URIs no upstream would subscribe to.
    let mut accepted = Filter {
        tools_list_changed: requested.tools_list_changed.filter(|b| *b),
        prompts_list_changed: requested.prompts_list_changed.filter(|b| *b),
        resources_list_changed: requested.resources_list_changed.filter(|b| *b),
        resource_subscriptions: None,
    };
    let mut uris: Vec<String> = Vec::new();
    for uri in requested_uris {
        if uris.contains(&uri) {
            continue;
        }
        let Ok(p) = RawValue::from_string(json!({ "uri": uri }).to_string()) else {
            continue;
        };
        let answer = namespace::handle_ctx(
            &gw.rt,
            &call.ns,
            "resources/subscribe",
            call.id,
            Some(&p),
            &CallCtx::default(),
        )
        .await
        .into_string();
        if Envelope::parse(answer.as_bytes()).is_ok_and(|e| e.result.is_some()) {
            uris.push(uri);
        } else {
            tracing::debug!(
                uri,
                "resource subscription refused upstream; not acknowledged"
            );
        }
    }
    if !uris.is_empty() {
        accepted.resource_subscriptions = Some(uris);
    }
    for uri in accepted.resource_subscriptions.iter().flatten() {
        gw.rt.relay.subscription(&session, uri, true);
    }
    let Some(rx) = session.open_stream() else {
        gw.sessions.remove(&session.id);
        return HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "listener stream could not be opened",
        )
        .into_response();
    };
    let guard = ListenerGuard {
        gw: gw.clone(),
        session_id: session.id.clone(),
    };
    // why: the stream must not keep the session alive: its end (shutdown) closes our rx.
    drop(session);
    tracing::info!(endpoint = %call.ep.name, filter = %accepted.to_json(), "subscriptions/listen stream opened");
    let sub_id = call.id.to_owned();
    let ack = jsonrpc::notification(
        "notifications/subscriptions/acknowledged",
        Some(
            &json!({
                "_meta": { KEY_SUBSCRIPTION_ID: &sub_id },
                "notifications": accepted.to_json(),
            })
            .to_string(),
        ),
    );
    let (_, init) = crate::endpoint::streamable::initialize_result(None, &call.ns.name);
    let server_info = serde_json::from_str::<Value>(&init).unwrap_or_default()["serverInfo"].take();
    let last = jsonrpc::response(
        call.id,
        &json!({
            "resultType": "complete",
            "_meta": { KEY_SUBSCRIPTION_ID: &sub_id, KEY_SERVER_INFO: server_info },
        })
        .to_string(),
    );
    let state = ListenState {
        first: Some(ack),
        rx,
        last: Some(last),
        filter: accepted,
        sub_id,
        _guard: guard,
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        if let Some(m) = st.first.take() {
            return Some((event(m), st));
        }
        loop {
            match st.rx.recv().await {
                Some(msg) => {
                    if let Some(out) = for_listener(&msg, &st.filter, &st.sub_id) {
                        return Some((event(out), st));
                    }
                }
                None => return st.last.take().map(|m| (event(m), st)),
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(gw.sse_keep_alive()))
        .into_response()
}

#[derive(Debug)]
pub(super) struct ListenState {
    pub(super) first: Option<String>,
    pub(super) rx: mpsc::Receiver<String>,
    pub(super) last: Option<String>,
    pub(super) filter: Filter,
    pub(super) sub_id: Box<RawValue>,
    pub(super) _guard: ListenerGuard,
}

pub(super) fn event(msg: String) -> Result<Event, Infallible> {
    Ok(Event::default().event("message").data(msg))
}

/// A fanned-out message as this listener's client gets it, or `None` when it is outside
/// the filter (log messages, other kinds).
pub(super) fn for_listener(message: &str, filter: &Filter, sub_id: &RawValue) -> Option<String> {
    let env = Envelope::parse(message.as_bytes()).ok()?;
    if env.kind() != Kind::Notification || !filter.accepts(env.method(), env.params) {
        return None;
    }
    let mut params: BTreeMap<String, Box<RawValue>> = match env.params {
        Some(p) => serde_json::from_str(p.get()).ok()?,
        None => BTreeMap::new(),
    };
    let mut meta: BTreeMap<String, Box<RawValue>> = params
        .remove("_meta")
        .and_then(|m| serde_json::from_str(m.get()).ok())
        .unwrap_or_default();
    meta.insert(KEY_SUBSCRIPTION_ID.to_owned(), sub_id.to_owned());
    params.insert("_meta".to_owned(), to_raw(&meta).ok()?);
    Some(jsonrpc::notification(
        env.method(),
        Some(&serde_json::to_string(&params).ok()?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_get_their_subscription_id() {
        let filter = Filter {
            tools_list_changed: Some(true),
            resource_subscriptions: Some(vec!["test://a".into()]),
            ..Filter::default()
        };
        let id = RawValue::from_string("7".into()).unwrap();
        let out = for_listener(
            r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
            &filter,
            &id,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["params"]["_meta"][KEY_SUBSCRIPTION_ID], 7);
        assert!(
            for_listener(
                r#"{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}"#,
                &filter,
                &id
            )
            .is_none()
        );
        assert!(
            for_listener(
                r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":1}}"#,
                &filter,
                &id
            )
            .is_none()
        );
        let up = for_listener(
            r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"test://a"}}"#,
            &filter,
            &id,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&up).unwrap();
        assert_eq!(v["params"]["uri"], "test://a");
        assert_eq!(v["params"]["_meta"][KEY_SUBSCRIPTION_ID], 7);
    }
}
