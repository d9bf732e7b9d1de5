//! `liangma client`: a gRPC client of a running service, for trying it out and for scripts.

use std::process::ExitCode;

use anyhow::Context;

use super::{ClientArgs, ClientCommand, EXIT_INVALID, EXIT_VALID};
use crate::code::Fen;
use crate::model::Verdict;
use crate::pb::v1 as pb;
use crate::trust::CentreKey;

/// The domain verdict of a response's verdict number (`None`: unspecified or unknown).
fn verdict_named(wire: i32) -> Option<Verdict> {
    pb::Verdict::try_from(wire).ok().and_then(crate::grpc::convert::verdict_of)
}

/// A fresh random request id (32 hex digits).
fn new_request_id() -> anyhow::Result<String> {
    let id = crate::model::RequestId::random().map_err(|e| anyhow::anyhow!("random source: {e}"))?;
    Ok(id.as_str().to_owned())
}

pub(super) fn run(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(call(args))
}

async fn call(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(args.server.clone())
        .context("--server must be a URL like http://127.0.0.1:50051")?;
    if let (Some(ca), Some(certificate), Some(private_key)) = (&args.ca, &args.cert, &args.key) {
        let tls = crate::federation::TlsMaterial::load(&crate::config::TlsConfig {
            certificate: certificate.clone(),
            private_key: private_key.clone(),
            ca: ca.clone(),
        })?;
        let mut client_tls = tls.client_config();
        if let Some(name) = &args.server_name {
            client_tls = client_tls.domain_name(name.clone());
        }
        endpoint = endpoint.tls_config(client_tls)?;
    }
    let channel = endpoint
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.server))?;
    match args.command {
        ClientCommand::Issue { issuer, id_number, purpose, audience, png, no_digits } => {
            let mut client = pb::issuer_service_client::IssuerServiceClient::new(channel);
            let response = client
                .issue_code(pb::IssueCodeRequest {
                    issuer_centre: issuer.to_string(),
                    id_number,
                    purpose: purpose.wire(),
                    audience_centre: audience.map(|c| c.to_string()).unwrap_or_default(),
                    lifetime_seconds: 0,
                    qr_format: if png.is_some() { pb::QrFormat::Png.into() } else { pb::QrFormat::None.into() },
                    omit_digits: no_digits,
                })
                .await?
                .into_inner();
            if let Some(path) = png {
                std::fs::write(&path, &response.qr_png).with_context(|| format!("writing {}", path.display()))?;
            }
            println!("{}", response.text);
            let expires = crate::clock::Timestamp::from_unix(response.expires_at_unix);
            match response.digits.is_empty() {
                true => eprintln!("code id {}  expires {expires}", response.code_id),
                false => eprintln!(
                    "digits {}  (at another centre: {})  code id {}  expires {expires}",
                    response.digits, response.network_digits, response.code_id
                ),
            }
            Ok(ExitCode::from(EXIT_VALID))
        }
        ClientCommand::Verify { code, digits, request_id } => {
            let mut client = pb::verifier_service_client::VerifierServiceClient::new(channel);
            let code = match (code, digits) {
                (Some(text), None) => pb::verify_code_request::Code::Text(text),
                (None, Some(digits)) => pb::verify_code_request::Code::Digits(digits),
                _ => anyhow::bail!("give a code text or --digits"),
            };
            let request_id = match request_id {
                Some(id) => id,
                None => new_request_id()?,
            };
            let request = pb::VerifyCodeRequest { code: Some(code), purpose: 0, request_id: request_id.clone() };
            let response = match client.verify_code(request).await {
                Ok(response) => response.into_inner(),
                Err(status) if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) => {
                    anyhow::bail!(
                        "{}: {}; whether the code was consumed is unknown: retry with --request-id {request_id}",
                        status.code(),
                        status.message()
                    )
                }
                Err(status) => return Err(status.into()),
            };
            let verdict = verdict_named(response.verdict);
            print!("{}", verdict.map_or("UNSPECIFIED", Verdict::as_str));
            if !response.detail.is_empty() {
                print!(" ({})", response.detail);
            }
            if let Some(claims) = &response.claims {
                let deposit = claims.deposit.unwrap_or_default();
                print!(
                    " issuer={} code={} subject={} claimed_balance={} claimed_months={}",
                    claims.issuer_centre,
                    claims.code_id,
                    claims.subject,
                    Fen(deposit.balance_fen),
                    deposit.continuous_months
                );
            }
            if let Some(live) = response.live.as_ref().filter(|live| live.found) {
                let status = live.status.unwrap_or_default();
                print!(
                    " member={} {} live_balance={} live_months={}",
                    live.masked_name,
                    live.masked_id_number,
                    Fen(status.balance_fen),
                    status.continuous_months
                );
            }
            if !response.differences.is_empty() {
                print!(" differs={}", response.differences.join(","));
            }
            if let Some(previous) = response.previous_use {
                let at = crate::clock::Timestamp::from_unix(previous.used_at_unix);
                print!(" used_by={} at={at}", previous.centre);
            }
            println!();
            Ok(ExitCode::from(if verdict == Some(Verdict::Valid) { EXIT_VALID } else { EXIT_INVALID }))
        }
        ClientCommand::KeyChange(change) => {
            let (centre, change) = key_change(change)?;
            let mut client = pb::trust_directory_service_client::TrustDirectoryServiceClient::new(channel);
            let answer = client
                .submit_key_change(pb::SubmitKeyChangeRequest { centre: centre.to_string(), change: Some(change) })
                .await?
                .into_inner();
            print!("signed into sequence {}", answer.sequence);
            if !answer.key_id.is_empty() {
                print!(", key id {}", answer.key_id);
            }
            println!();
            Ok(ExitCode::from(EXIT_VALID))
        }
        ClientCommand::MemberPage { issuer, id_number, lifetime } => {
            let mut client = pb::member_page_service_client::MemberPageServiceClient::new(channel);
            let answer = client
                .open_member_session(pb::OpenMemberSessionRequest {
                    issuer_centre: issuer.to_string(),
                    id_number,
                    lifetime_seconds: lifetime.unwrap_or(0),
                })
                .await?
                .into_inner();
            println!("{}{}", args.server.trim_end_matches('/'), answer.page_path);
            eprintln!("valid until {}", crate::clock::Timestamp::from_unix(answer.expires_at_unix));
            Ok(ExitCode::from(EXIT_VALID))
        }
        ClientCommand::ExportTrustList => {
            let mut client = pb::trust_directory_service_client::TrustDirectoryServiceClient::new(channel)
                .max_decoding_message_size(crate::trust::directory::MAX_SIGNED_LIST_BYTES + 1024);
            let answer = client.get_signed_trust_list(pb::GetSignedTrustListRequest { known_sequence: 0 }).await?;
            print!("{}", answer.into_inner().signed_list);
            Ok(ExitCode::from(EXIT_VALID))
        }
        ClientCommand::Health { service, alive } => {
            use tonic_health::pb::health_check_response::ServingStatus;
            let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
            let answer = client.check(tonic_health::pb::HealthCheckRequest { service }).await?.into_inner();
            let status = ServingStatus::try_from(answer.status).unwrap_or(ServingStatus::Unknown);
            println!("{}", status.as_str_name());
            let healthy = alive || status == ServingStatus::Serving;
            Ok(ExitCode::from(if healthy { EXIT_VALID } else { EXIT_INVALID }))
        }
        ClientCommand::Usage { issuer, id_number } => {
            let mut client = pb::usage_record_service_client::UsageRecordServiceClient::new(channel);
            let response = client
                .list_usage(pb::ListUsageRequest { issuer_centre: issuer.to_string(), id_number })
                .await?
                .into_inner();
            for entry in response.entries {
                let result = verdict_named(entry.result).map_or("UNSPECIFIED", Verdict::as_str);
                let repeated = if entry.count > 1 {
                    format!(" ×{} since {}", entry.count, crate::clock::Timestamp::from_unix(entry.first_at_unix))
                } else {
                    String::new()
                };
                println!(
                    "{} centre={} code={} {}{repeated}",
                    crate::clock::Timestamp::from_unix(entry.at_unix),
                    entry.centre,
                    entry.code_id,
                    result
                );
            }
            Ok(ExitCode::from(EXIT_VALID))
        }
    }
}

/// The request of a key change; a rotation is signed here with the current key.
fn key_change(
    command: super::KeyChangeCommand,
) -> anyhow::Result<(crate::code::CentreCode, pb::submit_key_change_request::Change)> {
    use super::KeyChangeCommand;
    use pb::submit_key_change_request::Change;
    let public = |path: &std::path::Path| -> anyhow::Result<Vec<u8>> {
        Ok(CentreKey::read_pem_file(path)?.verifying_key().as_bytes().to_vec())
    };
    Ok(match command {
        KeyChangeCommand::Add { centre, new_key, name } => {
            (centre, Change::Add(pb::AddKey { public_key: public(&new_key)?, centre_name: name.unwrap_or_default() }))
        }
        KeyChangeCommand::Rotate { centre, current_key, new_key } => {
            let current = CentreKey::read_pem_file(&current_key)?;
            let new = CentreKey::read_pem_file(&new_key)?.verifying_key();
            let signature = current.sign(&crate::federation::directory::rotation_message(centre, &new));
            (
                centre,
                Change::Rotate(pb::RotateKey {
                    new_public_key: new.as_bytes().to_vec(),
                    current_key_id: current.key_id().to_string(),
                    signature: signature.to_bytes().to_vec(),
                }),
            )
        }
        KeyChangeCommand::Revoke { centre, key_id } => (centre, Change::Revoke(pb::RevokeKey { key_id })),
        KeyChangeCommand::SetNode { centre, address } => (centre, Change::SetNode(pb::SetNode { address })),
    })
}
