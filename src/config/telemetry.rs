//! The `telemetry:` section: OpenTelemetry traces exported over OTLP.
//! Absent (the default), no span is exported and no exporter runs.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::types::{At, Duration, HttpUrl};

/// Where traces go; only `otlp` for now.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// An OTLP collector to send spans to; none are sent without it.
    pub otlp: Option<OtlpConfig>,
}

/// An OTLP trace exporter: a collector's endpoint, the wire protocol and
/// the share of new traces recorded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector: for `http/protobuf` the full URL spans are posted to
    /// (`http://collector:4318/v1/traces`), for `grpc` its origin
    /// (`http://collector:4317`).
    pub endpoint: At<HttpUrl>,
    /// `http/protobuf` (default) or `grpc`.
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// Share of traces started here that are recorded, 0.0 to 1.0 (default
    /// 1.0). A caller's `traceparent` decides for the traces it continues.
    #[serde(default)]
    pub sample_ratio: SampleRatio,
    /// The `service.name` resource attribute (default `oauth-sidecar`).
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// How long finished spans wait to be sent together (default 5s).
    #[serde(default = "default_export_interval")]
    pub export_interval: Duration,
}

fn default_export_interval() -> Duration {
    Duration::secs(5)
}

fn default_service_name() -> String {
    "oauth-sidecar".to_owned()
}

/// The OTLP wire protocols, named as `OTEL_EXPORTER_OTLP_PROTOCOL` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum OtlpProtocol {
    /// Protobuf messages posted over HTTP (port 4318 by convention).
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// gRPC (port 4317 by convention).
    #[serde(rename = "grpc")]
    Grpc,
}

/// A share between 0.0 and 1.0; anything else is refused where it is written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRatio(pub f64);

impl Default for SampleRatio {
    fn default() -> Self {
        SampleRatio(1.0)
    }
}

impl<'de> Deserialize<'de> for SampleRatio {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = SampleRatio;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number from 0.0 to 1.0")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<SampleRatio, E> {
                if (0.0..=1.0).contains(&v) {
                    Ok(SampleRatio(v))
                } else {
                    Err(E::custom(format!("{v} is not a share: expected a number from 0.0 to 1.0")))
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SampleRatio, E> {
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SampleRatio, E> {
                self.visit_f64(v as f64)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    #[test]
    fn otlp_section_parses_with_defaults() {
        let loaded =
            parse("telemetry:\n  otlp:\n    endpoint: http://127.0.0.1:4318/v1/traces\n", "t.yaml").unwrap();
        let otlp = loaded.config.telemetry.otlp.clone().unwrap();
        assert_eq!(otlp.protocol, super::OtlpProtocol::HttpProtobuf);
        assert_eq!(otlp.sample_ratio.0, 1.0);
        assert_eq!(otlp.service_name, "oauth-sidecar");
        assert_eq!(otlp.export_interval.0, std::time::Duration::from_secs(5));
        assert!(loaded.summary().contains("traces:     OTLP http/protobuf to 127.0.0.1:4318, sampling 1"));
        assert!(parse("listen: 127.0.0.1:0\n", "t.yaml").unwrap().config.telemetry.otlp.is_none());
    }

    #[test]
    fn bad_ratio_and_protocol_are_refused_where_written() {
        let err = parse(
            "telemetry:\n  otlp:\n    endpoint: http://127.0.0.1:4317\n    sample_ratio: 1.5\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("t.yaml:4:19: telemetry.otlp.sample_ratio: "), "{err}");
        let err = parse(
            "telemetry:\n  otlp:\n    endpoint: http://127.0.0.1:4317\n    protocol: http/json\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("t.yaml:4:15: telemetry.otlp.protocol: "), "{err}");
        let err = parse("telemetry:\n  otlp:\n    endpoint: https://c:4317\n    protocol: grpc\n", "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("t.yaml:3:15: telemetry.otlp.endpoint: gRPC is sent without TLS"), "{err}");
    }
}
