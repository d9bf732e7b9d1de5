//! OpenTelemetry export: a scripted session's spans reach a collector, name calls, Redis
//! operations and verdicts, and carry nothing that identifies the member.

use std::sync::{Arc, Mutex};

use liangma::pb::v1 as pb;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

use crate::harness::ZHANG_WEI;
use crate::process::serve_with;

/// An OTLP collector that keeps every export it receives.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[async_trait::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_and_name_no_member() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_address = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(collector.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);

    let redis = liangma::testkit::RedisServer::start();
    let config = [
        "[store]".to_owned(),
        "backend = \"redis\"".to_owned(),
        format!("redis_url = \"{}\"", redis.url()),
        "[telemetry]".to_owned(),
        format!("otlp_endpoint = \"http://{collector_address}\""),
        "sample_ratio = 1.0".to_owned(),
    ];
    let config: Vec<&str> = config.iter().map(String::as_str).collect();
    let served = serve_with("info", &config, true).await;
    let channel = tonic::transport::Channel::from_shared(served.address.clone()).unwrap().connect().await.unwrap();
    let mut issuer = pb::issuer_service_client::IssuerServiceClient::new(channel.clone());
    let code = issuer
        .issue_code(pb::IssueCodeRequest {
            issuer_centre: "410800".into(),
            id_number: ZHANG_WEI.into(),
            purpose: pb::Purpose::OffsiteLoan.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut verifier = pb::verifier_service_client::VerifierServiceClient::new(channel);
    for _ in 0..2 {
        let request = pb::VerifyCodeRequest {
            code: Some(pb::verify_code_request::Code::Text(code.text.clone())),
            purpose: 0,
            request_id: String::new(),
        };
        verifier.verify_code(request).await.unwrap();
    }
    // Spans leave in batches; shutting down sends what is queued.
    let (status, log, _) = served.terminate();
    assert_eq!(status.code(), Some(0), "{log}");

    let exports = collector.0.lock().unwrap().clone();
    let spans: Vec<_> = exports
        .iter()
        .flat_map(|export| &export.resource_spans)
        .flat_map(|resource| &resource.scope_spans)
        .flat_map(|scope| &scope.spans)
        .collect();
    let attribute = |span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
        span.attributes.iter().find(|attribute| attribute.key == key).and_then(|attribute| {
            match attribute.value.as_ref()?.value.as_ref()? {
                Value::StringValue(text) => Some(text.clone()),
                Value::IntValue(number) => Some(number.to_string()),
                _ => None,
            }
        })
    };
    let verdicts: Vec<String> = spans
        .iter()
        .filter(|span| span.name == "/liangma.v1.VerifierService/VerifyCode")
        .filter_map(|span| attribute(span, "liangma.verdict"))
        .collect();
    assert_eq!(verdicts, ["VALID", "ALREADY_USED"], "{spans:#?}");
    let issue = spans.iter().find(|span| span.name == "/liangma.v1.IssuerService/IssueCode").expect("IssueCode span");
    assert_eq!(attribute(issue, "rpc.grpc.status_code").as_deref(), Some("0"));
    // Redis operations are children of the call that made them.
    let consume: Vec<_> = spans.iter().filter(|span| span.name == "consume").collect();
    assert_eq!(consume.len(), 2);
    let verify_ids: Vec<&Vec<u8>> = spans
        .iter()
        .filter(|span| span.name == "/liangma.v1.VerifierService/VerifyCode")
        .map(|span| &span.span_id)
        .collect();
    assert!(consume.iter().all(|span| verify_ids.contains(&&span.parent_span_id)));
    let service_name = exports[0].resource_spans[0].resource.as_ref().unwrap().attributes.iter().any(|attribute| {
        attribute.key == "service.name"
            && matches!(attribute.value.as_ref().and_then(|v| v.value.as_ref()), Some(Value::StringValue(name)) if name == "liangma")
    });
    assert!(service_name);

    // Nothing in any export names the member or the code.
    let sent: Vec<u8> = exports.iter().flat_map(Message::encode_to_vec).collect();
    let code_id = code.code_id.to_lowercase();
    for secret in [ZHANG_WEI, "张伟", &code.text, &code_id, &code.digits.replace(' ', ""), "410***********0012"] {
        assert!(!sent.windows(secret.len()).any(|window| window == secret.as_bytes()), "spans carry {secret}");
    }
}
