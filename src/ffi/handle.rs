//! Typed opaque handles (in the spirit of rustls-ffi's `Castable`): every handle type states
//! whether C owns it through a `Box` or an `Arc`, and only the matching constructor, borrow and
//! free compile for it — `free_box::<wtd_session>` (an Arc-backed handle) is a type error.
//!
//! The pointer-taking helpers are safe functions: the contract they rely on is the C caller's
//! (a non-NULL handle came from the matching constructor and has not been freed), as stated on
//! every export in the header. NULL is always checked and reported as WTD_ERR_INVALID_ARGUMENT.

use std::sync::{Arc, Weak};

use crate::error::{Error, Result};

/// Marker: the handle is a `Box<T>` given to C (one owner; `*_free` drops it).
pub(crate) struct BoxOwned;
/// Marker: the handle is one strong reference of an `Arc<T>` given to C (calls that may block
/// and callbacks take their own references, so `*_free` from another thread cannot free it
/// under them).
pub(crate) struct ArcOwned;

/// An opaque handle type of the C API.
pub(crate) trait Handle: Sized + 'static {
    /// [`BoxOwned`] or [`ArcOwned`].
    type Ownership;
    /// The parameter name used in error messages ("session is NULL").
    const NAME: &'static str;
}

fn null(what: &str) -> Error {
    Error::invalid(format!("{what} is NULL"))
}

/// Borrows the value behind a handle of either kind for the length of a call.
pub(crate) fn borrow<'a, T: Handle>(p: *const T) -> Result<&'a T> {
    if p.is_null() {
        return Err(null(T::NAME));
    }
    if (p as usize) % std::mem::align_of::<T>() != 0 {
        return Err(Error::invalid(format!("{} is misaligned", T::NAME)));
    }
    // SAFETY: the C caller's contract: a live handle from this library.
    Ok(unsafe { &*p })
}

/// Gives `v` to C as a Box-backed handle.
pub(crate) fn new_box<T: Handle<Ownership = BoxOwned>>(v: T) -> *mut T {
    Box::into_raw(Box::new(v))
}

/// Takes a Box-backed handle back from C (NULL → `None`); dropping the box frees it.
pub(crate) fn take_box<T: Handle<Ownership = BoxOwned>>(p: *mut T) -> Option<Box<T>> {
    // SAFETY: the C caller's contract: NULL or a handle from `new_box::<T>`, freed only once.
    (!p.is_null()).then(|| unsafe { Box::from_raw(p) })
}

/// Frees a Box-backed handle (NULL is a no-op).
pub(crate) fn free_box<T: Handle<Ownership = BoxOwned>>(p: *mut T) {
    drop(take_box(p));
}

/// Gives `v` to C as an Arc-backed handle (C owns one strong reference).
pub(crate) fn new_arc<T: Handle<Ownership = ArcOwned>>(v: T) -> *mut T {
    Arc::into_raw(Arc::new(v)) as *mut T
}

/// Takes C's strong reference back (NULL → `None`); dropping it releases C's share.
pub(crate) fn take_arc<T: Handle<Ownership = ArcOwned>>(p: *mut T) -> Option<Arc<T>> {
    // SAFETY: the C caller's contract: NULL or a handle from `new_arc::<T>`, freed only once.
    (!p.is_null()).then(|| unsafe { Arc::from_raw(p as *const T) })
}

/// A new strong reference to an Arc-backed handle, held for the length of a call that may block.
pub(crate) fn arc_ref<T: Handle<Ownership = ArcOwned>>(p: *const T) -> Result<Arc<T>> {
    borrow(p)?;
    // SAFETY: `p` is a live `new_arc` handle (C's reference keeps the count ≥ 1 here).
    unsafe {
        Arc::increment_strong_count(p);
        Ok(Arc::from_raw(p))
    }
}

/// A weak reference to an Arc-backed handle, for callbacks that must never see it freed.
pub(crate) fn weak_ref<T: Handle<Ownership = ArcOwned>>(p: *const T) -> Result<Weak<T>> {
    Ok(Arc::downgrade(&arc_ref(p)?))
}

/// What a C callback closure holds: its handle, weakly (a callback never runs once the handle
/// is freed), and the application's `user_data`.
pub(crate) struct CallbackTarget<T> {
    handle: Weak<T>,
    user_data: super::UserData,
}

impl<T> Clone for CallbackTarget<T> {
    fn clone(&self) -> Self {
        CallbackTarget {
            handle: self.handle.clone(),
            user_data: self.user_data,
        }
    }
}

impl<T: Handle<Ownership = ArcOwned>> CallbackTarget<T> {
    /// The target for callbacks registered on handle `p` with `user_data`.
    pub(crate) fn new(p: *const T, user_data: *mut std::ffi::c_void) -> Result<Self> {
        Ok(CallbackTarget {
            handle: weak_ref(p)?,
            user_data: super::UserData(user_data),
        })
    }

    /// Runs `f(user_data, handle)` if the handle is still alive (it stays alive during `f`).
    pub(crate) fn call(&self, f: impl FnOnce(*mut std::ffi::c_void, *mut T)) {
        if let Some(h) = self.handle.upgrade() {
            f(self.user_data.get(), Arc::as_ptr(&h) as *mut T);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct B(u32);
    impl Handle for B {
        type Ownership = BoxOwned;
        const NAME: &'static str = "b";
    }
    struct A(u32);
    impl Handle for A {
        type Ownership = ArcOwned;
        const NAME: &'static str = "a";
    }

    #[test]
    fn box_and_arc_handles() {
        let b = new_box(B(7));
        assert_eq!(borrow(b).unwrap().0, 7);
        free_box(b);
        free_box::<B>(std::ptr::null_mut());
        assert_eq!(
            borrow::<B>(std::ptr::null()).err().unwrap().message,
            "b is NULL"
        );

        let a = new_arc(A(9));
        let strong = arc_ref(a).unwrap();
        let weak = weak_ref(a).unwrap();
        drop(take_arc(a));
        // C's reference is gone; the call's own reference keeps it alive.
        assert_eq!(strong.0, 9);
        assert!(weak.upgrade().is_some());
        drop(strong);
        assert!(weak.upgrade().is_none());
        assert!(take_arc::<A>(std::ptr::null_mut()).is_none());
        assert!(arc_ref::<A>(std::ptr::null()).is_err());
    }
}
