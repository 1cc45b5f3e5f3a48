/**
 * Bounded waits for tests on real processes: a bound on how long a test may
 * wait for something, never an assertion on how long it took.
 */

/** `promise`, or a rejection naming `what` once `ms` have passed without it settling. */
export const within = <A>(promise: PromiseLike<A>, what: string, ms: number): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(error)
      }
    )
  })

/** Polls `predicate` every 10 ms; rejects naming `what` once `ms` have passed without it holding. */
export const until = async (predicate: () => boolean, what: string, ms: number): Promise<void> => {
  const deadline = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
