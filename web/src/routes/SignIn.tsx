// Sign in with a username and password; the API answers with a bearer session token.
import { useId, useState, type FormEvent } from "react";
import { signIn } from "../client/api";
import { ProblemNote } from "../components/ProblemNote";

export function SignIn() {
  const userId = useId();
  const passwordId = useId();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signIn(username, password);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  }

  return (
    <main id="main" className="sign-in">
      <h1>AMOS FLOW</h1>
      <form onSubmit={(event) => void submit(event)} aria-label="Sign in">
        <div className="field">
          <label htmlFor={userId}>Username</label>
          <input
            id={userId}
            name="username"
            autoComplete="username"
            required
            value={username}
            onChange={(event) => setUsername(event.target.value)}
          />
        </div>
        <div className="field">
          <label htmlFor={passwordId}>Password</label>
          <input
            id={passwordId}
            name="password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(event) => setPassword(event.target.value)}
          />
        </div>
        <button type="submit" disabled={busy}>
          Sign in
        </button>
        <ProblemNote error={error} />
      </form>
    </main>
  );
}
