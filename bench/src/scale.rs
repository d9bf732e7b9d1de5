//! Operation at scale: verification past saturation with shedding, two replicas on one Redis, and Redis's fsync policies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::ensure;
use liangma::pb::v1 as pb;
use liangma::testkit as redis_server;
use tonic::transport::Channel;

use crate::load::{Measured, Pace, connect, own_load, with_cpu};
use crate::members::member_status;
use crate::processes::Service;
use crate::report::Row;
use crate::scenarios::{Bench, verify_request, verify_with};

/// The share of one CPU the overload scenario's node gets.
const NODE_CPU_PERCENT: u32 = 50;

/// Calls of one kind made while the overload ran: answered, refused by shedding.
#[derive(Default)]
struct Tally {
    answered: AtomicU64,
    shed: AtomicU64,
}

impl Tally {
    /// Counts an answer (true) or a refusal by shedding, RESOURCE_EXHAUSTED (false); any other
    /// failure fails the run.
    fn count<T>(&self, answer: Result<T, tonic::Status>) -> anyhow::Result<bool> {
        match answer {
            Ok(_) => {
                self.answered.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                self.shed.fetch_add(1, Ordering::Relaxed);
                Ok(false)
            }
            Err(status) => anyhow::bail!("unexpected answer under overload: {status}"),
        }
    }

    fn describe(&self) -> String {
        let (answered, shed) = (self.answered.load(Ordering::Relaxed), self.shed.load(Ordering::Relaxed));
        format!("{answered} answered, {shed} refused ({:.0}%)", 100.0 * shed as f64 / (answered + shed).max(1) as f64)
    }
}

/// Keeps `in_flight` calls of `call` going until `stop` is set; a worker whose call was shed
/// waits the service's retry hint (200 ms), as the API guide asks of clients.
async fn until_stopped<F, Fut>(
    channels: &[Channel],
    in_flight: usize,
    stop: &Arc<AtomicBool>,
    call: F,
) -> anyhow::Result<()>
where
    F: Fn(Channel) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<bool>> + Send,
{
    let workers: Vec<_> = (0..in_flight)
        .map(|worker| {
            let (channel, stop, call) = (channels[worker % channels.len()].clone(), Arc::clone(stop), call.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if !call(channel.clone()).await? {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(())
}

impl Bench {
    /// Past saturation: VerifyCode offered at 1.5× what the node verifies, with issuance (PNG)
    /// and bulk publishing at the same time, on a node whose verification room is the in-flight
    /// count at which it saturates (`limits.verify_concurrency`). Verification must keep its
    /// goodput and p99 while the shed classes are refused. The node runs on CPU 0 alone, the
    /// load generator and Redis on the others, in both runs: over-offering load on a shared
    /// machine would otherwise take CPU from the node through the generator, which a node and
    /// its clients on different machines do not do to each other.
    pub(crate) fn overload(&mut self) -> anyhow::Result<()> {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        ensure!(cpus >= 2, "the overload scenario needs two CPUs");
        let others = format!("1-{}", cpus - 1);
        let options = self.options.clone();
        let room = options.in_flight();
        let config = format!("[limits]\nverify_concurrency = {room}\n");
        let node =
            Service::start_configured(&self.liangma_binary, &self.data_dir, &self.redis.url(), &config, Some("0"))?;
        // Half a CPU, so that 1.5× its saturation stays well within what the generator on the
        // other CPU can offer (on a whole CPU the node outran it: the generator's CPU ran out
        // first and the row measured the generator).
        let quota = crate::processes::CpuQuota::limit(node.pid, NODE_CPU_PERCENT);
        if quota.is_none() {
            eprintln!("bench: overload: no cgroup CPU quota here; the node gets all of CPU 0");
        }
        let node_cpus = if quota.is_some() { format!("{NODE_CPU_PERCENT}% of 1 CPU") } else { "1 CPU".into() };
        crate::processes::pin(std::process::id(), &others)?;
        crate::processes::pin(self.redis.pid(), &others)?;
        let measured = self.overload_on(&node, room, &node_cpus);
        drop(quota);
        let everywhere = format!("0-{}", cpus - 1);
        crate::processes::pin(std::process::id(), &everywhere)?;
        crate::processes::pin(self.redis.pid(), &everywhere)?;
        measured
    }

    fn overload_on(&mut self, node: &Service, room: usize, node_cpus: &str) -> anyhow::Result<()> {
        let options = self.options.clone();
        let channels = self.runtime.block_on(connect(node.address, options.connections))?;
        let codes = self.codes.make(options.requests)?;
        let saturated = self.with_cpu(node.pid, options.requests, || {
            self.runtime.block_on(own_load(&channels, Pace::InFlight(room), options.requests, verify_with(codes, true)))
        })?;

        // Open loop: requests start at 1.5× the saturated rate, whatever the answers.
        let offered = 1.5 * saturated.per_second;
        let total = ((offered * 3.0) as usize).max(options.requests);
        let codes = self.codes.make(total)?;
        let (verifications, issuance, publishing) =
            (Arc::new(Tally::default()), Arc::new(Tally::default()), Arc::new(Tally::default()));
        let valid_latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total)));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let (node_cpu_before, redis_cpu_before) =
            (crate::processes::process_cpu(node.pid)?, crate::processes::redis_cpu(&self.redis.socket())?);
        let generator_cpu_before = crate::processes::process_cpu(std::process::id())?;
        self.runtime.block_on(async {
            let verify = {
                let (tally, latencies) = (Arc::clone(&verifications), Arc::clone(&valid_latencies));
                own_load(&channels, Pace::PerSecond(offered), total, move |channel, index| {
                    let (tally, latencies, code) = (Arc::clone(&tally), Arc::clone(&latencies), codes[index].clone());
                    Box::pin(async move {
                        let sent = Instant::now();
                        let mut client = pb::verifier_service_client::VerifierServiceClient::new(channel);
                        let answer = client.verify_code(verify_request(&code)).await;
                        if let Ok(response) = &answer {
                            ensure!(response.get_ref().verdict == i32::from(pb::Verdict::Valid), "not VALID");
                            latencies.lock().expect("not poisoned").push(sent.elapsed());
                        }
                        tally.count(answer).map(drop)
                    }) as std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>
                })
            };
            let issue = until_stopped(&channels, 64, &stop, {
                let tally = Arc::clone(&issuance);
                move |channel| {
                    let tally = Arc::clone(&tally);
                    async move {
                        let mut client = pb::issuer_service_client::IssuerServiceClient::new(channel);
                        tally.count(client.issue_code(Self::issue_request(pb::QrFormat::Png, true)).await)
                    }
                }
            });
            let publish = until_stopped(&channels, 8, &stop, {
                let tally = Arc::clone(&publishing);
                move |channel| {
                    let tally = Arc::clone(&tally);
                    async move {
                        let records = (0..1_000).map(member_status).collect();
                        let request = pb::PublishStatusesRequest { centre: "410800".into(), records };
                        let mut client = pb::registry_service_client::RegistryServiceClient::new(channel);
                        tally.count(client.publish_statuses(request).await)
                    }
                }
            });
            let verified = async {
                let verified = verify.await;
                stop.store(true, Ordering::Relaxed);
                verified
            };
            let (verified, issued, published) = tokio::join!(verified, issue, publish);
            verified.and(issued).and(published)
        })?;
        let elapsed = started.elapsed();
        let node_cpu = crate::processes::process_cpu(node.pid)? - node_cpu_before;
        let redis_cpu = crate::processes::redis_cpu(&self.redis.socket())? - redis_cpu_before;
        let generator_cpu = crate::processes::process_cpu(std::process::id())? - generator_cpu_before;
        eprintln!(
            "bench: overload {:.2} s: node {:.2} s CPU, Redis {:.2} s, load generator {:.2} s",
            elapsed.as_secs_f64(),
            node_cpu.as_secs_f64(),
            redis_cpu.as_secs_f64(),
            generator_cpu.as_secs_f64()
        );
        let latencies = std::mem::take(&mut *valid_latencies.lock().expect("not poisoned"));
        ensure!(!latencies.is_empty(), "no verification was answered under overload");
        let valid = latencies.len() as u32;
        let mut goodput = Measured::from_latencies(latencies, elapsed);
        // CPU per VALID answer: what the refusals and the shed classes cost is charged to it.
        goodput.cpu = Some([node_cpu / valid, redis_cpu / valid]);
        let met = goodput.per_second >= 0.9 * saturated.per_second && goodput.p99() <= saturated.p99().mul_f64(1.5);
        let load = format!("own, {room} in flight; verify_concurrency = {room}; node on {node_cpus}");
        self.rows.push(Row::new("liangma VerifyCode at saturation (overload node)", load, saturated));
        self.rows.push(
            Row::new(
                "liangma VerifyCode past saturation: VALID goodput, with PNG issuance and publishing offered",
                format!("own, {offered:.0}/s offered + 64 IssueCode PNG + 8 publish batches in flight"),
                goodput,
            )
            .against(&saturated)
            .target("goodput ≥ 0.9× saturation, p99 ≤ 1.5×", met),
        );
        self.rows.push(Row::fact(
            "… shed while past saturation",
            format!(
                "VerifyCode {}; IssueCode PNG {}; PublishStatuses {}",
                verifications.describe(),
                issuance.describe(),
                publishing.describe()
            ),
            "issuance and publishing shed first",
            Some(
                issuance.shed.load(Ordering::Relaxed) > issuance.answered.load(Ordering::Relaxed)
                    && publishing.shed.load(Ordering::Relaxed) > 0,
            ),
        ));
        Ok(())
    }

    /// One replica against two on the same Redis, at saturation, the load spread over the
    /// replicas' connections. Everything shares this machine's cores, so the figure is the ratio
    /// of two replicas to one at equal total cores, not a second machine's gain.
    pub(crate) fn replicas(&mut self) -> anyhow::Result<()> {
        let (options, requests) = (self.options.clone(), self.options.requests);
        let in_flight = Pace::InFlight(options.in_flight());
        let second = Service::start(&self.liangma_binary, &self.data_dir, &self.redis.url())?;
        let codes = self.codes.make(requests)?;
        let one = self.with_cpu(self.service.pid, requests, || {
            self.runtime.block_on(own_load(&self.service_channels, in_flight, requests, verify_with(codes, true)))
        })?;
        let half = options.connections.div_ceil(2);
        let mut both = self.runtime.block_on(connect(self.service.address, half))?;
        both.extend(self.runtime.block_on(connect(second.address, half))?);
        let codes = self.codes.make(requests)?;
        let second_before = crate::processes::process_cpu(second.pid)?;
        let mut two = self.with_cpu(self.service.pid, requests, || {
            self.runtime.block_on(own_load(&both, in_flight, requests, verify_with(codes, true)))
        })?;
        // Server CPU per request: both replicas together.
        let second_cpu = crate::processes::process_cpu(second.pid)? - second_before;
        if let Some(cpu) = two.cpu.as_mut() {
            cpu[0] += second_cpu / requests as u32;
        }
        ensure!(second.problems() == 0, "the second replica logged warnings or errors");
        let load = format!("own {}×{} streams", options.connections, options.streams);
        self.rows.push(Row::new("liangma VerifyCode, one replica", load.clone(), one));
        self.rows.push(
            Row::new("liangma VerifyCode, two replicas on one Redis (same cores)", load, two)
                .against(&one)
                .note("reported: the ratio at equal total cores"),
        );
        Ok(())
    }

    /// VerifyCode at saturation on Redis with the append-only file, fsync every second against
    /// fsync before every reply: the cost of never losing a used mark in a Redis crash.
    pub(crate) fn durability(&mut self) -> anyhow::Result<()> {
        let (options, requests) = (self.options.clone(), self.options.requests);
        let in_flight = Pace::InFlight(options.in_flight());
        let mut measured = Vec::new();
        for policy in ["everysec", "always"] {
            let redis = redis_server::RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", policy]);
            let node = Service::start(&self.liangma_binary, &self.data_dir, &redis.url())?;
            let channels = self.runtime.block_on(connect(node.address, options.connections))?;
            self.runtime.block_on(crate::members::publish(channels[0].clone(), 0, crate::members::BENCH_MEMBERS))?;
            let codes = self.codes.make(requests)?;
            let run = with_cpu(node.pid, &redis.socket(), requests, || {
                self.runtime.block_on(own_load(&channels, in_flight, requests, verify_with(codes, true)))
            })?;
            ensure!(node.problems() == 0, "liangma logged warnings or errors on appendfsync {policy}");
            measured.push(run);
        }
        let (everysec, always) = (measured[0], measured[1]);
        let load = format!("own {}×{} streams", options.connections, options.streams);
        self.rows.push(Row::new("liangma VerifyCode, Redis appendfsync everysec", load.clone(), everysec));
        self.rows.push(
            Row::new("liangma VerifyCode, Redis appendfsync always", load, always)
                .against(&everysec)
                .note("reported: the price of an fsync before every reply"),
        );
        Ok(())
    }
}
