/**
 * The messages of a session held for async iteration (or until its first `message` listener):
 * bounded, shared by all its iterators (each message goes to one of them), ended with the session.
 * Internal (session.ts only): its members are `_`-prefixed, which the browser bundle shortens.
 */
export class Inbox<T> {
  readonly #items: T[] = [];
  readonly #wake: (() => void)[] = [];
  #ended = false;
  /** Iterators in use. */
  _iterators = 0;

  constructor(readonly bound: number) {}

  get _length(): number {
    return this.#items.length;
  }

  /** Add `item`; false when the oldest item was dropped to make room. */
  _push(item: T): boolean {
    const room = this.#items.length < this.bound;
    if (!room) this.#items.shift();
    this.#items.push(item);
    this.#notify();
    return room;
  }

  /** Everything held, removed. */
  _take(): T[] {
    return this.#items.splice(0);
  }

  /** No more items will come: iterators finish once the held ones are taken. */
  _end(): void {
    this.#ended = true;
    this.#notify();
  }

  _iterator(): AsyncIterator<T> {
    this._iterators++;
    let done = false;
    const finish = (): IteratorReturnResult<undefined> => {
      if (!done) {
        done = true;
        this._iterators--;
      }
      return { done: true, value: undefined };
    };
    return {
      next: async () => {
        for (;;) {
          if (done) return finish();
          if (this.#items.length) return { done: false, value: this.#items.shift()! };
          if (this.#ended) return finish();
          await new Promise<void>((wake) => this.#wake.push(wake));
        }
      },
      return: async () => finish(),
    };
  }

  #notify(): void {
    for (const wake of this.#wake.splice(0)) wake();
  }
}
