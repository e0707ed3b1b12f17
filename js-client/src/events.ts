/**
 * A tiny typed event emitter: `on(name, listener)` returns a function that removes the listener;
 * `off(name, listener)` does the same. A listener that throws does not disturb the emitter or
 * the other listeners: its error is rethrown in a microtask (an uncaught error, as in the DOM).
 */

export type Listener<T> = (event: T) => void;

export class Emitter<Events extends object> {
  readonly #listeners: { [K in keyof Events]?: Set<Listener<Events[K]>> } = {};

  on<K extends keyof Events>(name: K, listener: Listener<Events[K]>): () => void {
    (this.#listeners[name] ??= new Set()).add(listener);
    return () => this.off(name, listener);
  }

  off<K extends keyof Events>(name: K, listener: Listener<Events[K]>): void {
    this.#listeners[name]?.delete(listener);
  }

  /** Number of listeners for `name`. */
  listenerCount(name: keyof Events): number {
    return this.#listeners[name]?.size ?? 0;
  }

  protected emit<K extends keyof Events>(name: K, event: Events[K]): void {
    for (const listener of [...(this.#listeners[name] ?? [])]) {
      try {
        listener(event);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
