import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Real-process tests spawn children; keep the suite bounded and deterministic.
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
