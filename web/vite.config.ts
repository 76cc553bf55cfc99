// The console builds into the Python package, which serves it at `/` (see amosflow.console).
import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "../src/amosflow/console/dist",
    emptyOutDir: true,
    assetsDir: "assets",
    // Keep every asset a file: `data:` URLs for scripts would need a laxer CSP.
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 2000,
  },
  server: {
    // `npm run dev` against a node on the default port.
    proxy: { "/api": "http://127.0.0.1:8686" },
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.{ts,tsx}"],
  },
});
