/** Small numeric and formatting helpers shared by the runner and the sections. */

/** A full, synchronous collection (twice, so weak and finalizable garbage goes too). */
export const gcNow = (): void => {
  if (globalThis.gc === undefined) throw new Error("run node with --expose-gc (the runner re-executes itself with it)")
  globalThis.gc()
  globalThis.gc()
}

export const heapUsed = (): number => process.memoryUsage().heapUsed

export const median = (values: ReadonlyArray<number>): number | undefined => {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** 3 significant digits, with k / M suffixes from 10,000 up. */
export const formatNumber = (v: number): string => {
  const abs = Math.abs(v)
  if (abs >= 1e7) return `${(v / 1e6).toPrecision(3)}M`
  if (abs >= 1e4) return `${(v / 1e3).toPrecision(3)}k`
  if (abs >= 100) return v.toFixed(0)
  if (abs >= 10) return v.toFixed(1)
  if (abs >= 1) return v.toFixed(2)
  return v.toPrecision(2)
}

export const formatValue = (v: number, unit: string): string => {
  switch (unit) {
    case "ops/s":
      return v >= 1e6 ? `${(v / 1e6).toFixed(2)} M/s` : `${(v / 1e3).toFixed(0)} k/s`
    case "B":
      return v >= 1024 ? `${(v / 1024).toFixed(2)} KB` : `${v.toFixed(0)} B`
    case "x":
      return `${v.toFixed(2)}x`
    default:
      return `${formatNumber(v)} ${unit}`
  }
}

export const formatRatio = (r: number): string => (r >= 100 ? `${r.toFixed(0)}x` : r >= 10 ? `${r.toFixed(1)}x` : `${r.toFixed(2)}x`)
