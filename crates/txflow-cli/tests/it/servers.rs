//! Servers of a test's own, for tests that stop and restart them (doing so
//! to the harness's shared servers would disturb the tests running beside).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::harness_var;

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A PostgreSQL 15 cluster of the test's own, on a free port, stopped and
/// deleted when dropped.
pub struct PrivatePostgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    port: u16,
    pub url: String,
}

/// Runs a PostgreSQL tool as the `postgres` user when we are root (the
/// server refuses to run as root).
fn as_postgres(tool: &str) -> Command {
    let bin = Path::new(&harness_var("TXFLOW_TEST_PG_BIN")).join(tool);
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let mut command = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    command.stdout(Stdio::null()).stderr(Stdio::null());
    command
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let data = dir.path().join("data");
        // The postgres user must reach and own its folder.
        let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
        let _ = Command::new("chown")
            .arg("postgres:")
            .arg(dir.path())
            .stderr(Stdio::null())
            .status();
        let ok = as_postgres("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "txflow", "-A", "trust", "--no-sync", "-E", "UTF8"])
            .status()
            .expect("initdb");
        assert!(ok.success(), "initdb failed");
        let port = free_port();
        let pg = PrivatePostgres {
            url: format!("postgres://txflow@127.0.0.1:{port}/postgres"),
            _dir: dir,
            data,
            port,
        };
        pg.pg_ctl("start");
        pg
    }

    fn pg_ctl(&self, action: &str) {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.data.display()
        );
        let ok = as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-o", &opts, "-m", "fast", "-w", action])
            .status()
            .expect("pg_ctl");
        assert!(ok.success(), "pg_ctl {action} failed");
    }

    /// `pg_ctl stop -m fast`: connections are closed at once.
    pub fn stop(&self) {
        self.pg_ctl("stop");
    }

    pub fn start_again(&self) {
        self.pg_ctl("start");
    }

    pub fn restart(&self) {
        self.pg_ctl("restart");
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .status();
    }
}

/// A server process on a port of its own, which it keeps across restarts;
/// killed when dropped.
struct Process {
    name: &'static str,
    port: u16,
    child: Option<std::process::Child>,
}

impl Process {
    fn new(name: &'static str) -> Process {
        Process {
            name,
            port: free_port(),
            child: None,
        }
    }

    /// Starts `command` and waits until it listens on the port.
    fn spawn(&mut self, command: Command) {
        self.spawn_within(command, std::time::Duration::from_secs(10));
    }

    /// [`Process::spawn`], waiting up to `within`.
    fn spawn_within(&mut self, mut command: Command, within: std::time::Duration) {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name));
        self.child = Some(child);
        let deadline = std::time::Instant::now() + within;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not start",
                self.name
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for the exit.
    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An S3 server (s3s-fs) of the test's own, serving a folder whose
/// sub-folders are buckets.
pub struct PrivateS3 {
    pub root: tempfile::TempDir,
    process: Process,
}

impl PrivateS3 {
    pub const ACCESS_KEY: &str = "private-key";
    pub const SECRET_KEY: &str = "private-secret";

    pub fn start() -> PrivateS3 {
        let mut s3 = PrivateS3 {
            root: tempfile::tempdir().expect("a temporary folder"),
            process: Process::new("s3s-fs"),
        };
        s3.start_again();
        s3
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.process.port)
    }

    /// Starts the server (again) on the same port and folder.
    pub fn start_again(&mut self) {
        let mut command = Command::new(harness_var("TXFLOW_TEST_S3S_BIN"));
        command
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &self.process.port.to_string(),
            ])
            .args([
                "--access-key",
                Self::ACCESS_KEY,
                "--secret-key",
                Self::SECRET_KEY,
            ])
            .arg(self.root.path());
        self.process.spawn(command);
    }

    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// An Apache Kafka broker of the test's own (one KRaft node, PLAINTEXT, as
/// the harness's is built), its log on disk, so that a restart keeps it.
pub struct PrivateKafka {
    dir: tempfile::TempDir,
    controller: u16,
    process: Process,
}

impl PrivateKafka {
    pub fn start() -> PrivateKafka {
        let mut broker = PrivateKafka {
            dir: tempfile::tempdir().expect("a temporary folder"),
            controller: free_port(),
            process: Process::new("kafka"),
        };
        let port = broker.process.port;
        let controller = broker.controller;
        let data = broker.dir.path().join("data");
        let properties = format!(
            "process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{controller}\n\
             listeners=CONTROLLER://127.0.0.1:{controller},PLAINTEXT://127.0.0.1:{port}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
             log.dirs={}\n\
             auto.create.topics.enable=false\n\
             offsets.topic.replication.factor=1\n\
             offsets.topic.num.partitions=4\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             transaction.state.log.num.partitions=4\n\
             group.initial.rebalance.delay.ms=0\n\
             num.network.threads=2\n\
             num.io.threads=2\n",
            data.display()
        );
        std::fs::write(broker.properties(), properties).expect("server.properties");
        let formatted = broker
            .script("kafka-storage.sh")
            .args(["format", "-t", "dHhmbG93LXByaXZhdGUtaw", "-c"])
            .arg(broker.properties())
            .env("KAFKA_HEAP_OPTS", "-Xmx256m")
            .output()
            .expect("kafka-storage.sh");
        assert!(
            formatted.status.success(),
            "formatting Kafka's storage: {}",
            String::from_utf8_lossy(&formatted.stderr)
        );
        broker.start_again();
        broker
    }

    fn properties(&self) -> PathBuf {
        self.dir.path().join("server.properties")
    }

    fn script(&self, name: &str) -> Command {
        Command::new(
            Path::new(&harness_var("TXFLOW_TEST_KAFKA_DIST"))
                .join("bin")
                .join(name),
        )
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.process.port)
    }

    /// Starts the broker (again) on the same port and log.
    pub fn start_again(&mut self) {
        let dist = harness_var("TXFLOW_TEST_KAFKA_DIST");
        let mut command = self.script("kafka-server-start.sh");
        command
            .arg(self.properties())
            .env("KAFKA_HEAP_OPTS", "-Xmx512m -Xms256m")
            .env("KAFKA_JMX_OPTS", "-Dnojmx=true")
            .env("LOG_DIR", self.dir.path().join("logs"))
            .env(
                "KAFKA_LOG4J_OPTS",
                format!("-Dlog4j2.configurationFile=file:{dist}/config/log4j2.properties"),
            );
        // A JVM: slower to listen than the other servers.
        self.process
            .spawn_within(command, std::time::Duration::from_secs(60));
    }

    /// SIGKILL: no clean shutdown, the log recovered at the next start.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// A VictoriaMetrics of the test's own (started as the harness starts its
/// own), to stop and start again.
pub struct PrivateVictoria {
    data: tempfile::TempDir,
    process: Process,
}

impl PrivateVictoria {
    pub fn start() -> PrivateVictoria {
        let mut vm = PrivateVictoria {
            data: tempfile::tempdir().expect("a temporary folder"),
            process: Process::new("victoria-metrics"),
        };
        vm.start_again();
        vm
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.process.port)
    }

    /// Starts the server (again) on the same port and data.
    pub fn start_again(&mut self) {
        let mut command = Command::new(harness_var("TXFLOW_TEST_VM_BIN"));
        command.args([
            format!("-httpListenAddr=127.0.0.1:{}", self.process.port),
            format!("-storageDataPath={}", self.data.path().display()),
            "-retentionPeriod=100y".to_owned(),
            "-search.latencyOffset=0s".to_owned(),
            "-dedup.minScrapeInterval=1ms".to_owned(),
        ]);
        self.process.spawn(command);
    }

    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM, as an operator stops it: it flushes what it holds in memory
    /// (a SIGKILL loses the last second of acknowledged points, by its
    /// design), then exits.
    pub fn stop(&mut self) {
        self.process.terminate();
    }
}
