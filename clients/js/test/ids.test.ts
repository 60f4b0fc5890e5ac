// SeenIds, the dedupe window (src/ids.ts): the last DEDUPE_WINDOW distinct ids, kept in a
// fixed-size ring buffer; the same answers as the Set plus shifted array it replaced.
import { describe, expect, it } from 'vitest';
import { DEDUPE_WINDOW, SeenIds } from '../src/ids.js';

/** The window as it was: a Set and an array of the same ids, the oldest shifted off. */
class ShiftedWindow {
  private seen = new Set<string>();
  private order: string[] = [];
  constructor(private capacity: number) {}
  has(id: string): boolean { return this.seen.has(id); }
  add(id: string): void {
    this.seen.add(id);
    this.order.push(id);
    if (this.order.length > this.capacity) this.seen.delete(this.order.shift() as string);
  }
}

describe('SeenIds', () => {
  it('remembers the last DEDUPE_WINDOW (2048) ids and forgets older ones, oldest first', () => {
    expect(DEDUPE_WINDOW).toBe(2048);
    const w = new SeenIds();
    for (let i = 0; i < DEDUPE_WINDOW; i++) w.add(`${i}-0`);
    expect(w.size).toBe(DEDUPE_WINDOW);
    expect(w.has('0-0')).toBe(true);
    w.add('x');
    expect(w.has('0-0')).toBe(false);
    expect(w.has('1-0')).toBe(true);
    expect(w.has('x')).toBe(true);
    expect(w.size).toBe(DEDUPE_WINDOW);
    for (let i = 0; i < 3 * DEDUPE_WINDOW; i++) w.add(`y${i}`); // round the ring several times
    expect(w.size).toBe(DEDUPE_WINDOW);
    expect(w.has(`y${2 * DEDUPE_WINDOW - 1}`)).toBe(false);
    expect(w.has(`y${2 * DEDUPE_WINDOW}`)).toBe(true);
    expect(w.has(`y${3 * DEDUPE_WINDOW - 1}`)).toBe(true);
  });

  it('adding an id it has is a no-op: the id keeps its place', () => {
    const w = new SeenIds(3);
    w.add('a');
    w.add('b');
    w.add('c');
    w.add('a');
    expect(w.size).toBe(3);
    w.add('d'); // a is still the oldest
    expect(['a', 'b', 'c', 'd'].map((id) => w.has(id))).toEqual([false, true, true, true]);
  });

  it('answers as the Set + Array.shift() window did, used as the service uses it', () => {
    let seed = 42;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    for (const capacity of [1, 2, 7, 64]) {
      const w = new SeenIds(capacity);
      const model = new ShiftedWindow(capacity);
      for (let i = 0; i < 5000; i++) {
        const id = String(Math.floor(rand() * capacity * 3)); // repeats, near and far
        expect(w.has(id), `${capacity}: ${i}`).toBe(model.has(id));
        if (!model.has(id)) { // the service adds an id only when it has not seen it
          w.add(id);
          model.add(id);
        }
      }
    }
  });
});
