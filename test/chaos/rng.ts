// A small seeded PRNG (mulberry32): the chaos suite's random choices (fault kind order, phase,
// injection points, sizes) are reproducible from CHAOS_SEED. Timing still varies run to run, so a
// seed reproduces the plan of a run, not its exact interleavings.
export class Rng {
  private s: number;
  constructor(readonly seed: number) {
    this.s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [min, max] (both included). */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  float(min: number, max: number): number {
    return min + this.next() * (max - min);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
  shuffle<T>(xs: readonly T[]): T[] {
    const a = [...xs];
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a;
  }
  /** An independent stream derived from this one (so adding draws in one place keeps others stable). */
  fork(): Rng {
    return new Rng(Math.floor(this.next() * 4294967296));
  }
}

export const randomSeed = () => Math.floor(Math.random() * 2 ** 31);
