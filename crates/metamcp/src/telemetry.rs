//! OpenTelemetry tracing for `serve`: on only when an OTLP endpoint is configured
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), exported over
//! OTLP/HTTP (protobuf) by the SDK's batch processor and flushed when the gateway stops.
//! Everything else is the SDK's own reading of the standard variables: `OTEL_SERVICE_NAME`
//! and `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`/`_TIMEOUT`,
//! `OTEL_TRACES_SAMPLER`/`_ARG`, `OTEL_BSP_*`.

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// How long the stop waits for the last spans to be exported.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The running tracer provider; [`Telemetry::shutdown`] flushes it.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

/// Whether tracing is asked for: an OTLP endpoint is set, and neither `OTEL_SDK_DISABLED`
/// nor `OTEL_TRACES_EXPORTER=none` says otherwise.
fn wanted(env: &impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| env(name).is_some_and(|v| !v.trim().is_empty());
    let endpoint = set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let no_exporter =
        env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    endpoint && !disabled && !no_exporter
}

/// Whether the service name is given by the standard variables (else it is `metamcp`).
fn service_named(env: &impl Fn(&str) -> Option<String>) -> bool {
    env("OTEL_SERVICE_NAME").is_some_and(|v| !v.trim().is_empty())
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|v| {
            v.split(',')
                .any(|kv| kv.trim_start().starts_with("service.name="))
        })
}

/// Starts tracing when it is asked for; `None` leaves it off (nothing is built).
pub fn from_env(
    env: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<(Telemetry, metamcp_server::otel::Otel)>> {
    if !wanted(env) {
        return Ok(None);
    }
    let protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_default();
    if !matches!(protocol.trim(), "" | "http/protobuf") {
        anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={protocol:?}: metamcp exports traces over http/protobuf only"
        );
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
        .context("OpenTelemetry: cannot build the OTLP/HTTP exporter (OTEL_EXPORTER_OTLP_*)")?;
    let mut resource = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    if !service_named(env) {
        resource = resource.with_service_name("metamcp");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let otel = metamcp_server::otel::Otel::new(provider.tracer("metamcp"));
    Ok(Some((Telemetry { provider }, otel)))
}

impl Telemetry {
    /// Exports what is still queued and stops the exporter (on the blocking pool: the SDK
    /// waits for its batch thread).
    pub async fn shutdown(self) {
        let provider = self.provider;
        let done =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT))
                .await;
        match done {
            Ok(Ok(())) => tracing::info!("OpenTelemetry spans flushed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "OpenTelemetry: flushing spans failed"),
            Err(e) => tracing::warn!(error = %e, "OpenTelemetry: the flush task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn on_only_with_an_endpoint() {
        assert!(!wanted(&env_of(&[])));
        assert!(!wanted(&env_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(wanted(&env_of(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4318"
        )])));
        assert!(wanted(&env_of(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:4318/v1/traces"
        )])));
        assert!(!wanted(&env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ])));
        assert!(!wanted(&env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ])));
    }

    #[test]
    fn the_service_name_defaults_to_metamcp() {
        assert!(!service_named(&env_of(&[])));
        assert!(service_named(&env_of(&[("OTEL_SERVICE_NAME", "gw")])));
        assert!(service_named(&env_of(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "a=b, service.name=gw"
        )])));
    }

    #[test]
    fn a_grpc_protocol_is_refused() {
        let e = from_env(&env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]));
        assert!(e.is_err());
    }
}
