// Request coalescing for hot reads: callers asking for the same key at the same moment share one
// load instead of each sending its own query. Under hundreds of polls per second of one operation
// (a dashboard, CI jobs, the live view), the database answers once per load, not once per caller.
//
// Never stale by more than the caller's own wait: a caller only shares a load that STARTED AFTER it
// arrived. One that arrives while a load is in flight (started before it: it may not see a write
// the caller just made, such as its own pause) waits for the next load, which starts when the
// current one settles and is shared by everyone who arrived meanwhile. So a read still observes
// every write that committed before the request arrived, and at most two loads per key exist.

interface Slot<V> {
  /** The load in flight, started before anyone now waiting arrived. */
  current: Promise<V> | null;
  /** The load that starts when `current` settles, shared by the callers that arrived since. */
  next: Promise<V> | null;
}

export function coalescer<V>(load: (key: string) => Promise<V>): (key: string) => Promise<V> {
  const slots = new Map<string, Slot<V>>();

  const start = (key: string, slot: Slot<V>): Promise<V> => {
    const p = load(key);
    slot.current = p;
    const settled = () => {
      if (slot.current === p) slot.current = null;
      if (!slot.current && !slot.next) slots.delete(key);
    };
    p.then(settled, settled);
    return p;
  };

  return (key: string) => {
    let slot = slots.get(key);
    if (!slot) {
      slot = { current: null, next: null };
      slots.set(key, slot);
    }
    if (!slot.current) return start(key, slot);
    if (slot.next) return slot.next;
    const s = slot;
    const next = s
      .current!.then(
        () => undefined,
        () => undefined,
      )
      .then(() => {
        s.next = null;
        return start(key, s);
      });
    s.next = next;
    return next;
  };
}
