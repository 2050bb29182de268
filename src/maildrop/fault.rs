//! The fault-injection harness: named crash points in UPDATE and recovery (`fault_point`),
//! fired by the fault-injection feature's environment variables in the integration tests and
//! by `crash::during` in the unit tests. Empty in a normal build.

use std::io;

/// A named place in UPDATE where the fault tests stop the process. With the
/// fault-injection feature it aborts when the environment variable POP3D_FAULT_POINT names
/// it (at its POP3D_FAULT_HIT-th visit, default the first), and fails with a "storage full"
/// error when POP3D_FAULT_ERROR names it. In unit tests it panics where `crash::during` says,
/// which unwinds out of UPDATE without any cleanup, as a crash would. Otherwise it is empty.
#[inline]
pub(super) fn fault_point(name: &str) -> io::Result<()> {
    #[cfg(test)]
    crash::check(name);
    #[cfg(feature = "fault-injection")]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        static HITS: AtomicU64 = AtomicU64::new(0);
        if std::env::var_os("POP3D_FAULT_POINT").is_some_and(|p| p == name) {
            let nth = std::env::var("POP3D_FAULT_HIT")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            if HITS.fetch_add(1, Ordering::SeqCst) + 1 >= nth {
                std::process::abort();
            }
        }
        if std::env::var_os("POP3D_FAULT_ERROR").is_some_and(|p| p == name) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("injected fault at {name}"),
            ));
        }
    }
    let _ = name;
    Ok(())
}

/// Simulated crashes for the unit tests, per thread since tests run in parallel.
#[cfg(test)]
pub(crate) mod crash {
    use std::cell::RefCell;

    /// Something another program does while UPDATE runs, at a fault point.
    type Hook = Box<dyn FnOnce()>;

    thread_local! {
        static AT: RefCell<Option<(String, u64)>> = const { RefCell::new(None) };
        static HOOK: RefCell<Option<(String, Hook)>> = const { RefCell::new(None) };
    }

    /// Runs `f`; the first visit of fault point `name` on this thread runs `hook` there (an
    /// agent's append in the middle of UPDATE, say). True if the hook ran.
    pub(crate) fn hooked<T>(
        name: &str,
        hook: impl FnOnce() + 'static,
        f: impl FnOnce() -> T,
    ) -> (T, bool) {
        HOOK.with(|h| *h.borrow_mut() = Some((name.to_owned(), Box::new(hook))));
        let out = f();
        let ran = HOOK.with(|h| h.borrow_mut().take().is_none());
        (out, ran)
    }

    /// The message of a simulated crash's panic.
    pub(crate) const CRASH: &str = "simulated crash";

    /// Makes the `nth` visit (from 1) of fault point `name` on this thread panic.
    fn at(name: &str, nth: u64) {
        AT.with(|a| *a.borrow_mut() = Some((name.to_owned(), nth)));
    }

    /// Runs `f` with the `nth` visit of fault point `name` crashing; true if it crashed.
    pub(crate) fn during<T>(name: &str, nth: u64, f: impl FnOnce() -> T) -> bool {
        at(name, nth);
        let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err();
        clear();
        crashed
    }

    /// No more simulated crashes on this thread.
    pub(crate) fn clear() {
        AT.with(|a| *a.borrow_mut() = None);
    }

    pub(super) fn check(name: &str) {
        let hook = HOOK.with(|h| {
            let mut h = h.borrow_mut();
            match h.as_ref() {
                Some((point, _)) if point == name => h.take().map(|(_, hook)| hook),
                _ => None,
            }
        });
        if let Some(hook) = hook {
            hook();
        }
        let fire = AT.with(|a| {
            let mut a = a.borrow_mut();
            match a.as_mut() {
                Some((point, nth)) if point == name => {
                    *nth -= 1;
                    *nth == 0
                }
                _ => false,
            }
        });
        if fire {
            clear();
            std::panic::panic_any(CRASH);
        }
    }
}
