//! `bench crypt [CHECKS]`: what one password check costs on this machine, the bound that
//! sessions per second with `--system-users` are read against: CHECKS checks (default 20) of a
//! password against a hash of the host's default method and cost (yescrypt on Debian), made
//! and checked through pop3d's own libcrypt wrapper, one after another on one thread. Prints
//! one tab-separated line: `crypt`, the setting's method and cost, milliseconds per check.
//!
//!     cargo run --release --example bench -- crypt 50

use std::time::Instant;

use pop3d::sys;

use crate::{fail, Outcome};

const USAGE: &str = "usage: bench crypt [CHECKS]";

/// Checks when none are asked for: enough to average out a scheduler tick.
const DEFAULT_CHECKS: u32 = 20;

/// The password hashed and checked; its length does not change yescrypt's cost.
const PASSWORD: &str = "bench-secret";

pub fn run(words: &[String]) -> Outcome<()> {
    let checks = match words {
        [] => DEFAULT_CHECKS,
        [n] if n == "-h" || n == "--help" => {
            println!("{USAGE}");
            return Ok(());
        }
        [n] => n
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| fail!("{USAGE}"))?,
        _ => return Err(fail!("{USAGE}")),
    };
    let setting = sys::default_setting().map_err(|e| fail!("crypt_gensalt: {e}"))?;
    let hash = sys::crypt(PASSWORD, &setting).map_err(|e| fail!("crypt: {e}"))?;
    let start = Instant::now();
    for _ in 0..checks {
        let again = sys::crypt(PASSWORD, &hash).map_err(|e| fail!("crypt: {e}"))?;
        if again != hash {
            return Err(fail!(
                "a check of the right password did not give the hash back"
            ));
        }
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0 / f64::from(checks);
    // "$y$j9T$": the method and its cost parameters, without the salt.
    let method: String = hash.split('$').take(3).collect::<Vec<_>>().join("$");
    println!("crypt\t{method}$\t{ms:.2}");
    Ok(())
}
