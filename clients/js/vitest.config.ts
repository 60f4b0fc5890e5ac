import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (file: string) => fileURLToPath(new URL(`./src/${file}`, import.meta.url));

export default defineConfig({
  resolve: {
    // tests import the package by its published name, as an app does (see tsconfig.json `paths`)
    alias: [
      { find: /^@dashboard-gateway\/client\/react$/, replacement: src('react.ts') },
      { find: /^@dashboard-gateway\/client$/, replacement: src('index.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts', 'test/**/*.test.tsx'],
    environment: 'node',
    // describe/it/expect as globals too: TutorMax's testing guide writes its test that way
    globals: true,
    // wire tests start real gateway / redis-server processes: keep the machine light
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    restoreMocks: true,
    unstubGlobals: true,
  },
});
