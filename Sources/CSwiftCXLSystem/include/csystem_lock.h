#ifndef CSYSTEM_LOCK_H
#define CSYSTEM_LOCK_H
/* A recursive lock for the per-message path of the vfio-user server (issue 14): taking it uncontended is one
 * compare-and-swap, releasing it one exchange; a thread that holds it only counts. Waiters sleep on a futex
 * (the three-state mutex of Drepper, "Futexes Are Tricky", 2011: 0 unlocked, 1 locked, 2 locked with waiters).
 * pthread's recursive mutex behind Foundation's NSRecursiveLock costs about a hundred instructions per lock and
 * unlock on that path; this about twenty. The struct must not move while in use (allocate it). */
#include <pthread.h>
#include <stdint.h>

typedef struct {
    uint32_t state;
    uint32_t depth;
    uintptr_t owner;
} csystem_rlock;

/* Slow paths (csystem.c): wait until the lock is free and take it; wake one waiter. */
void csystem_rlock_wait(csystem_rlock *lock);
void csystem_rlock_wake(csystem_rlock *lock);

static inline void csystem_rlock_init(csystem_rlock *lock) {
    lock->state = 0;
    lock->depth = 0;
    lock->owner = 0;
}

static inline void csystem_rlock_lock(csystem_rlock *lock) {
    uintptr_t self = (uintptr_t)pthread_self();
    /* Only this thread ever stores its own id there, and clears it before releasing: equality means it holds it. */
    if (__atomic_load_n(&lock->owner, __ATOMIC_RELAXED) == self) { lock->depth++; return; }
    uint32_t expected = 0;
    if (!__atomic_compare_exchange_n(&lock->state, &expected, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        csystem_rlock_wait(lock);
    __atomic_store_n(&lock->owner, self, __ATOMIC_RELAXED);
    lock->depth = 1;
}

static inline void csystem_rlock_unlock(csystem_rlock *lock) {
    if (--lock->depth > 0) return;
    __atomic_store_n(&lock->owner, 0, __ATOMIC_RELAXED);
    if (__atomic_exchange_n(&lock->state, 0, __ATOMIC_RELEASE) == 2) csystem_rlock_wake(lock);
}

#endif
