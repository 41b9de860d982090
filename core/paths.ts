/** Container paths: absolute, `.` and empty segments dropped, `..` refused by callers. */
export function cleanPath(path: string): string {
  return "/" + path.split("/").filter((s) => s && s !== ".").join("/");
}
