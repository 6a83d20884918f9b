//! A type-erased event, stored inline when it is small.
//!
//! [`Payload`] owns one value of some `E: Event`. When `E` fits in
//! [`INLINE_SIZE`] bytes with an alignment of at most [`INLINE_ALIGN`], the
//! value lives in the payload itself, so publishing it allocates nothing;
//! otherwise the payload holds a `Box<E>`. Which of the two is decided by
//! `E` alone ([`stored_inline`]), so every typed access can recompute it.
//!
//! Invariants, owned by this type and relied on by every `unsafe` block:
//! - `storage` holds an initialised `E` (inline) or `Box<E>` (boxed), where
//!   `E` is the type whose `TypeId` is `vtable.type_id`; it is dropped
//!   exactly once, by `Drop`.
//! - `vtable` was made for that same `E` (its `TypeId` lives there rather
//!   than beside it, so a payload is 16 bytes smaller: a ring slot holds
//!   its envelope in two cache lines, see `envelope`).
//! - The bytes sit in an `UnsafeCell`, so the `&E` handed to handlers may
//!   mutate through interior mutability.

use crate::event::{short_type_name, Event};
use std::any::TypeId;
use std::marker::PhantomData;
use std::mem::{align_of, size_of, MaybeUninit};

/// Events up to this many bytes are stored inline.
pub const INLINE_SIZE: usize = 64;
/// Events with up to this alignment are stored inline.
pub const INLINE_ALIGN: usize = 16;

/// Whether `E` is stored inline (true) or boxed.
pub const fn stored_inline<E>() -> bool {
    size_of::<E>() <= INLINE_SIZE && align_of::<E>() <= INLINE_ALIGN
}

/// The inline bytes. `UnsafeCell` because handlers get `&E` and may mutate
/// through it (atomics, mutexes inside an event): without it, a shared
/// borrow of the storage would freeze the bytes. This is std's cell, not the
/// loom shim's: it is about aliasing within one owner, not a protocol
/// between threads, and loom's cell cannot lend a reference past a closure.
#[repr(C, align(16))]
struct Storage(std::cell::UnsafeCell<MaybeUninit<[u8; INLINE_SIZE]>>);

impl Storage {
    fn ptr(&self) -> *mut u8 {
        self.0.get().cast()
    }
}

struct VTable {
    type_id: TypeId,
    /// `None` for an inline event with no drop glue (plain `Copy` data):
    /// nothing to call.
    drop_value: Option<unsafe fn(*mut u8)>,
    name: unsafe fn(*const u8) -> &'static str,
}

/// One event of some type, owned, with its type erased.
pub struct Payload {
    storage: Storage,
    vtable: &'static VTable,
}

// SAFETY: a Payload only ever holds an `E: Event`, and `Event` requires
// `Send + Sync`; the raw storage is owned like a `Box<E>` would be.
unsafe impl Send for Payload {}
// SAFETY: as above: shared access only hands out `&E`, and `E: Sync`.
unsafe impl Sync for Payload {}

trait VTableFor {
    const VTABLE: VTable;
}

impl<E: Event> VTableFor for E {
    const VTABLE: VTable = VTable {
        type_id: TypeId::of::<E>(),
        drop_value: if stored_inline::<E>() && !std::mem::needs_drop::<E>() {
            None
        } else {
            Some(drop_value::<E>)
        },
        name: name_of::<E>,
    };
}

/// # Safety
/// `storage` holds a live `E` stored as [`stored_inline`] says, and is not
/// used again afterwards.
unsafe fn drop_value<E: Event>(storage: *mut u8) {
    if stored_inline::<E>() {
        // SAFETY: the caller promises a live inline `E` at `storage`.
        unsafe { std::ptr::drop_in_place(storage.cast::<E>()) }
    } else {
        // SAFETY: the caller promises a live `Box<E>` at `storage`; reading
        // it out moves ownership of the box here, and it is dropped once.
        drop(unsafe { storage.cast::<Box<E>>().read() })
    }
}

/// The event's [`Event::name`]; if that panics, the panic is logged and
/// the type's default name stands in: workers ask for names (for metrics
/// rows and logs) outside any handler's `catch_unwind`, and must go on.
///
/// # Safety
/// `storage` holds a live `E` stored as [`stored_inline`] says.
unsafe fn name_of<E: Event>(storage: *const u8) -> &'static str {
    // SAFETY: forwarded from the caller.
    let event = unsafe { value_ptr::<E>(storage) };
    crate::caught::catch(|| event.name()).unwrap_or_else(|panic| {
        let name = short_type_name::<E>();
        tracing::error!(
            panic = panic.message(),
            event = name,
            "an event's name panicked"
        );
        name
    })
}

/// # Safety
/// `storage` holds a live `E` stored as [`stored_inline`] says; the
/// reference lives no longer than that value.
#[inline(always)]
unsafe fn value_ptr<'a, E: Event>(storage: *const u8) -> &'a E {
    if stored_inline::<E>() {
        // SAFETY: a live inline `E`, aligned because `Storage` is 16-aligned
        // and `align_of::<E>() <= 16`.
        unsafe { &*storage.cast::<E>() }
    } else {
        // SAFETY: a live `Box<E>`; the box outlives the borrow.
        unsafe { &*storage.cast::<Box<E>>() }
    }
}

impl Payload {
    /// Takes ownership of `event`, inline when it fits.
    #[inline]
    pub fn new<E: Event>(event: E) -> Payload {
        let storage = Storage(std::cell::UnsafeCell::new(MaybeUninit::uninit()));
        let slot = storage.ptr();
        if stored_inline::<E>() {
            // SAFETY: `E` fits in the 64 bytes and its alignment divides 16,
            // the alignment of `Storage`.
            unsafe { slot.cast::<E>().write(event) }
        } else {
            // SAFETY: a `Box<E>` is one pointer, which fits and is aligned.
            unsafe { slot.cast::<Box<E>>().write(Box::new(event)) }
        }
        Payload {
            storage,
            vtable: &<E as VTableFor>::VTABLE,
        }
    }

    /// The `TypeId` of the stored event.
    #[inline(always)]
    pub fn type_id(&self) -> TypeId {
        self.vtable.type_id
    }

    /// `Event::name` of the stored event (its type's default name if that
    /// panics).
    pub fn name(&self) -> &'static str {
        // SAFETY: the vtable was made for the stored type (module invariant).
        unsafe { (self.vtable.name)(self.storage.ptr()) }
    }

    /// Gives the event back, as the `E` it was made from.
    ///
    /// # Panics
    /// If it is not an `E`: only the code that made the payload from an `E`
    /// takes it back, so that is a bug in this crate.
    pub fn into_inner<E: Event>(self) -> E {
        assert!(
            self.vtable.type_id == TypeId::of::<E>(),
            "a payload taken back as another type"
        );
        let this = std::mem::ManuallyDrop::new(self);
        let storage = this.storage.ptr();
        if stored_inline::<E>() {
            // SAFETY: the type ids match, so `storage` holds a live inline
            // `E`; `ManuallyDrop` keeps `Drop` from dropping it again.
            unsafe { storage.cast::<E>().read() }
        } else {
            // SAFETY: as above, for the `Box<E>` of a boxed `E`.
            *unsafe { storage.cast::<Box<E>>().read() }
        }
    }

    /// The event, if it is an `E`.
    #[inline(always)]
    pub fn downcast_ref<E: Event>(&self) -> Option<&E> {
        self.downcast_ref_by(&TypeIdOf::<E>::new())
    }

    /// The event, if it is an `E`, with `E`'s `TypeId` read from `of`.
    #[inline(always)]
    pub(crate) fn downcast_ref_by<E: Event>(&self, of: &TypeIdOf<E>) -> Option<&E> {
        if self.vtable.type_id == of.0 {
            // SAFETY: the type ids match, and `of` holds `E`'s (only
            // `TypeIdOf::new` makes one, and it is invariant in `E`), so
            // `storage` holds an `E`.
            Some(unsafe { value_ptr::<E>(self.storage.ptr()) })
        } else {
            None
        }
    }
}

/// `E`'s `TypeId` as a value, to keep beside data that is read anyway (a
/// handler's captures). `TypeId::of::<E>()` in code is a 16-byte constant
/// of `E`'s own: with many event types, comparing with it costs a cache
/// miss per event. Made only by [`TypeIdOf::new`], so it holds `E`'s.
pub(crate) struct TypeIdOf<E>(TypeId, PhantomData<fn(E) -> E>);

impl<E: Event> TypeIdOf<E> {
    pub(crate) fn new() -> Self {
        TypeIdOf(TypeId::of::<E>(), PhantomData)
    }
}

impl Drop for Payload {
    /// Drops the event. If the event's own `Drop` panics, the panic is
    /// logged and goes no further: the bus drops events on its worker
    /// threads, which must go on (a worker unwinding out of a batch would
    /// leave its shard claimed), and the event is gone either way.
    fn drop(&mut self) {
        if let Some(drop_value) = self.vtable.drop_value {
            let storage = self.storage.ptr();
            // SAFETY: the storage holds the live value the vtable was made
            // for, and `drop` runs once; after a panic the value counts as
            // dropped, and nothing touches the storage again.
            crate::caught::contain(format_args!("an event's drop panicked"), || unsafe {
                drop_value(storage)
            });
        }
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field("event", &self.name())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Small(u64, Arc<AtomicUsize>);
    impl Event for Small {}
    impl Drop for Small {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Large([u64; 16], Arc<AtomicUsize>);
    impl Event for Large {}
    impl Drop for Large {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[repr(align(32))]
    struct OverAligned(u8);
    impl Event for OverAligned {}

    #[test]
    fn into_inner_gives_the_value_back_and_drops_it_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let small = Payload::new(Small(7, drops.clone())).into_inner::<Small>();
        let large = Payload::new(Large([3; 16], drops.clone())).into_inner::<Large>();
        assert_eq!((small.0, large.0[15]), (7, 3));
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop((small, large));
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn small_events_are_inline_and_large_ones_boxed() {
        assert!(stored_inline::<Small>());
        assert!(stored_inline::<[u8; 64]>());
        assert!(!stored_inline::<[u8; 65]>());
        assert!(!stored_inline::<Large>());
        assert!(!stored_inline::<OverAligned>());
    }

    #[test]
    fn each_value_is_dropped_exactly_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        drop(Payload::new(Small(1, drops.clone())));
        drop(Payload::new(Large([2; 16], drops.clone())));
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    struct Counter(AtomicUsize);
    impl Event for Counter {}

    #[test]
    fn inline_events_may_mutate_through_shared_references() {
        let p = Payload::new(Counter(AtomicUsize::new(1)));
        let counter = p.downcast_ref::<Counter>().unwrap();
        counter.0.fetch_add(1, Ordering::SeqCst);
        assert_eq!(p.name(), "Counter");
        assert_eq!(
            p.downcast_ref::<Counter>()
                .unwrap()
                .0
                .load(Ordering::SeqCst),
            2
        );
    }

    #[test]
    fn downcasts_check_the_type() {
        let drops = Arc::new(AtomicUsize::new(0));
        let p = Payload::new(Small(42, drops.clone()));
        assert_eq!(p.downcast_ref::<Small>().map(|s| s.0), Some(42));
        assert!(p.downcast_ref::<Large>().is_none());
        assert_eq!(p.name(), "Small");
        let large = Payload::new(Large([7; 16], drops.clone()));
        assert_eq!(large.downcast_ref::<Large>().map(|l| l.0[15]), Some(7));
        assert!(large.downcast_ref::<Small>().is_none());

        let p = Payload::new(OverAligned(9));
        assert_eq!(p.downcast_ref::<OverAligned>().map(|o| o.0), Some(9));
    }

    /// An event whose `name` panics, inline or boxed by its size.
    struct Unnamed<const N: usize>([u8; N]);
    impl<const N: usize> Event for Unnamed<N> {
        fn name(&self) -> &'static str {
            panic!("no name for {} bytes", self.0.len())
        }
    }

    #[test]
    fn a_panicking_name_gives_way_to_the_types_default_name() {
        let inline = Payload::new(Unnamed([1; 8]));
        assert!(inline.name().starts_with("Unnamed<"));
        let boxed = Payload::new(Unnamed([2; 100]));
        assert!(boxed.name().starts_with("Unnamed<"));
        // The value is untouched.
        assert_eq!(
            boxed.downcast_ref::<Unnamed<100>>().map(|u| u.0[99]),
            Some(2)
        );
    }
}
