//! A callback gate: lets "replace the callbacks" wait until a callback already running has
//! returned, so the application may free what the old callbacks used as soon as the call
//! returns (msquic's and GameNetworkingSockets' rule for handlers).
//!
//! Whoever invokes an object's callbacks holds [`Gate::enter`]'s guard meanwhile; whoever
//! replaces them swaps them first and then calls [`Gate::quiesce`]. `quiesce` does not wait
//! when the calling thread is itself inside one of this gate's callbacks (the change applies
//! from the next event — waiting would deadlock) or is a wtd runtime thread (a callback of
//! another object: waiting there could deadlock two objects replacing each other's callbacks).

use std::cell::RefCell;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::lock::lock;

thread_local! {
    /// The gates this thread is inside now, innermost last (nested callbacks of layers).
    static ENTERED: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// See the module documentation.
#[derive(Default)]
pub(crate) struct Gate {
    running: Mutex<()>,
}

/// While alive: this thread runs callbacks behind the gate.
pub(crate) struct Entered<'a> {
    _running: MutexGuard<'a, ()>,
}

impl Gate {
    fn id(&self) -> usize {
        self as *const Gate as usize
    }

    /// Marks this thread as running the gate's callbacks until the guard drops.
    pub(crate) fn enter(&self) -> Entered<'_> {
        let running = lock(&self.running);
        ENTERED.with(|e| e.borrow_mut().push(self.id()));
        Entered { _running: running }
    }

    /// Returns once no callback behind the gate is running (see the module documentation for
    /// when it returns at once).
    pub(crate) fn quiesce(&self) {
        let inside = ENTERED.with(|e| e.borrow().contains(&self.id()));
        if !inside && !crate::runtime::on_runtime_thread() {
            drop(lock(&self.running));
        }
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        ENTERED.with(|e| {
            e.borrow_mut().pop();
        });
    }
}

/// An object's replaceable callbacks and the gate every call of them passes: callers take the
/// set with [`CallbackSlot::get`] inside [`CallbackSlot::enter`]; [`CallbackSlot::replace`]
/// swaps the set and then waits for a call of the old one in flight.
pub(crate) struct CallbackSlot<T> {
    set: Mutex<Option<Arc<T>>>,
    gate: Gate,
}

impl<T> Default for CallbackSlot<T> {
    fn default() -> Self {
        CallbackSlot {
            set: Mutex::new(None),
            gate: Gate::default(),
        }
    }
}

impl<T> CallbackSlot<T> {
    /// The callbacks installed now.
    pub(crate) fn get(&self) -> Option<Arc<T>> {
        lock(&self.set).clone()
    }

    /// Marks this thread as running these callbacks until the guard drops.
    pub(crate) fn enter(&self) -> Entered<'_> {
        self.gate.enter()
    }

    /// Installs `callbacks` (`None`: removes them), runs `installed` on the new set while no
    /// other thread can see a different one, then waits as [`Gate::quiesce`] does.
    pub(crate) fn replace(&self, callbacks: Option<T>, installed: impl FnOnce(Option<&T>)) {
        {
            let mut set = lock(&self.set);
            *set = callbacks.map(Arc::new);
            installed(set.as_deref());
        }
        self.gate.quiesce();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn quiesce_waits_for_a_running_callback_but_not_inside_one() {
        let gate = Arc::new(Gate::default());
        let done = Arc::new(AtomicBool::new(false));
        let (g, d) = (gate.clone(), done.clone());
        let entered = Arc::new(std::sync::Barrier::new(2));
        let e = entered.clone();
        let t = std::thread::spawn(move || {
            let _in = g.enter();
            g.quiesce(); // inside its own callback: returns at once
            e.wait();
            std::thread::sleep(Duration::from_millis(50));
            d.store(true, Ordering::SeqCst);
        });
        entered.wait();
        gate.quiesce();
        assert!(
            done.load(Ordering::SeqCst),
            "quiesce returned while the callback ran"
        );
        t.join().unwrap();
    }

    #[test]
    fn nested_gates_know_they_are_inside() {
        let (outer, inner) = (Gate::default(), Gate::default());
        let _o = outer.enter();
        {
            let _i = inner.enter();
            outer.quiesce(); // would deadlock if only the innermost gate were remembered
            inner.quiesce();
        }
        outer.quiesce();
    }
}
