// Tells, while the IDs stream in, whether a list can hold no duplicate: then the plan resolves the
// staged IDs as they are instead of grouping them by ID first (planner.ts), and a 1M-ID plan saves
// the ~1 s hash aggregate PostgreSQL spends on it (`npm run bench -- plan`, classify stage).
// Only "no duplicate, for certain" is acted on. Each ID leaves a 52-bit fingerprint of its UTF-16
// code units (the same for an ID read as packed ASCII bytes or as a decoded string); the same ID
// twice always gives the same fingerprint, so a real duplicate can never be missed. Two different
// IDs with one fingerprint (about 1 in 10,000 lists of 1M IDs) only cost the grouped plan.
const FINGERPRINT_LOW = 2 ** 20;
// Double hashing stays short up to a high load (~3 probes on average at 0.96), so 1M IDs fit in
// 2^20 slots: 8 MB of API memory at the largest list instead of 16.
const MAX_LOAD = 0.96;
const FIRST_SLOTS = 1 << 12;

export class DistinctIds {
  /** 0 = empty; otherwise 1 + fingerprint (h1 · 2^20 + the low 20 bits of h2). */
  private slots: Float64Array | undefined = new Float64Array(FIRST_SLOTS);
  private used = 0;
  private h1 = 0;
  private h2 = 0;

  /** False once any fingerprint was seen twice; the table is then dropped (nothing more to prove). */
  get distinct(): boolean {
    return this.slots !== undefined;
  }

  /** An ID given as bytes [start, end) of printable ASCII (a packed batch's line). */
  addAscii(buf: Uint8Array, start: number, end: number): void {
    if (!this.slots) return;
    this.begin();
    for (let i = start; i < end; i++) this.step(buf[i]!);
    this.finish();
  }

  addString(id: string): void {
    if (!this.slots) return;
    this.begin();
    for (let i = 0; i < id.length; i++) this.step(id.charCodeAt(i));
    this.finish();
  }

  /** Every line of a packed batch (IDs each followed by a line feed). */
  addPacked(bytes: Uint8Array): void {
    let s = 0;
    for (let i = 0; i < bytes.length && this.slots; i++) {
      if (bytes[i] !== 0x0a) continue;
      this.addAscii(bytes, s, i);
      s = i + 1;
    }
  }

  private begin() {
    this.h1 = 0x811c9dc5;
    this.h2 = 0x2545f491;
  }

  // Two independent 32-bit hashes per code unit (FNV-1a and a multiply-xorshift), mixed at the end.
  private step(c: number) {
    this.h1 = Math.imul(this.h1 ^ c, 0x01000193);
    this.h2 = Math.imul(this.h2 ^ c, 0x5bd1e995);
    this.h2 ^= this.h2 >>> 15;
  }

  private finish() {
    const a = mix(this.h1);
    const b = mix(this.h2 ^ this.h1);
    const value = 1 + a * FINGERPRINT_LOW + (b & (FINGERPRINT_LOW - 1));
    if (!this.insert(this.slots!, value)) {
      this.slots = undefined;
      return;
    }
    if (++this.used > this.slots!.length * MAX_LOAD) this.grow();
  }

  /** False when the value is there already. */
  private insert(slots: Float64Array, value: number): boolean {
    const mask = slots.length - 1;
    const v = value - 1;
    const a = Math.floor(v / FINGERPRINT_LOW);
    // The step is odd, so with a power-of-two table the probe visits every slot.
    const stride = ((v % FINGERPRINT_LOW) | 1) & mask || 1;
    for (let i = a & mask; ; i = (i + stride) & mask) {
      const s = slots[i]!;
      if (s === 0) {
        slots[i] = value;
        return true;
      }
      if (s === value) return false;
    }
  }

  private grow() {
    const old = this.slots!;
    const next = new Float64Array(old.length * 2);
    for (const v of old) if (v !== 0) this.insert(next, v);
    this.slots = next;
  }
}

/** murmur3's finaliser: every input bit reaches every output bit. Unsigned 32-bit result. */
function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
