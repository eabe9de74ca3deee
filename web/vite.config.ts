import { defineConfig } from "vite";

// No React plugin: esbuild compiles TSX with the automatic runtime, which is all a production
// build needs (and keeps Vite installable with npm 10). `npm run dev` proxies the API to a
// running analytics service.
export default defineConfig({
  esbuild: { jsx: "automatic" },
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  server: {
    proxy: {
      "/v1": { target: process.env.TASKPILOT_ANALYTICS ?? "http://127.0.0.1:8005" },
    },
  },
});
