// ESLint for the program (index.ts, components/, scripts/) and the policy pack (policy/, linted by the
// policy tier once its packages are installed): ESLint's and typescript-eslint's recommended
// rules with type information, and Pulumi's rules against an Output inside a template literal (which
// renders as a warning text instead of its value: use pulumi.interpolate).
import js from "@eslint/js";
import pulumi from "@pulumi/eslint-plugin";
import { defineConfig } from "eslint/config";
import tseslint from "typescript-eslint";

export default defineConfig(
    { ignores: ["**/node_modules/"] },
    {
        files: ["index.ts", "components/**/*.ts", "scripts/**/*.ts", "policy/**/*.ts"],
        extends: [js.configs.recommended, tseslint.configs.recommendedTypeChecked],
        languageOptions: {
            parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
        },
        plugins: { "@pulumi": pulumi },
        rules: {
            "@pulumi/no-output-in-template-literal": "error",
            "@pulumi/no-output-instance-in-template-literal": "error",
        },
    },
);
