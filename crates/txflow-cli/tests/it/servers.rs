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
