// The one react-dom entry point the tests use (react-dom ships no types of its own).
declare module "react-dom/server" {
  import type { ReactNode } from "react";
  export function renderToString(node: ReactNode): string;
}
