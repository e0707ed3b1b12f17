// A tiny in-memory IndexedDB, just what IndexedDbIdentityStore uses (open with upgrade, one object
// store with out-of-line keys, get/put/delete, transaction completion). Callbacks fire
// asynchronously and values are structured-cloned, as in browsers.

type Handler = ((this: unknown, ev: unknown) => unknown) | null;

class FakeRequest<T> {
  result: T | undefined;
  error: DOMException | null = null;
  onsuccess: Handler = null;
  onerror: Handler = null;
  onupgradeneeded: Handler = null;
  onblocked: Handler = null;

  succeed(value: T): void {
    this.result = value;
    this.onsuccess?.call(this, {});
  }
}

class FakeTransaction {
  oncomplete: Handler = null;
  onerror: Handler = null;
  onabort: Handler = null;
  error: DOMException | null = null;
  #pending = 0;

  constructor(readonly data: Map<string, unknown>) {}

  objectStore(): object {
    const op = <T>(run: () => T): FakeRequest<T> => {
      const req = new FakeRequest<T>();
      this.#pending++;
      setTimeout(() => {
        req.succeed(run());
        if (--this.#pending === 0) setTimeout(() => this.oncomplete?.call(this, {}), 0);
      }, 0);
      return req;
    };
    return {
      get: (key: string) => op(() => structuredClone(this.data.get(key))),
      put: (value: unknown, key: string) => op(() => (this.data.set(key, structuredClone(value)), key)),
      delete: (key: string) => op(() => (this.data.delete(key), undefined)),
    };
  }
}

export class FakeIndexedDb {
  readonly databases = new Map<string, Map<string, Map<string, unknown>>>();
  openConnections = 0;

  open(name: string): FakeRequest<object> {
    const req = new FakeRequest<object>();
    setTimeout(() => {
      const fresh = !this.databases.has(name);
      const stores = this.databases.get(name) ?? new Map<string, Map<string, unknown>>();
      this.databases.set(name, stores);
      this.openConnections++;
      const db = {
        objectStoreNames: { contains: (s: string) => stores.has(s) },
        createObjectStore: (s: string) => stores.set(s, new Map()),
        transaction: (s: string) => {
          const data = stores.get(s);
          if (data === undefined) throw new DOMException('no such object store', 'NotFoundError');
          return new FakeTransaction(data);
        },
        close: () => {
          this.openConnections--;
        },
      };
      req.result = db;
      if (fresh) req.onupgradeneeded?.call(req, {});
      req.succeed(db);
    }, 0);
    return req;
  }
}
