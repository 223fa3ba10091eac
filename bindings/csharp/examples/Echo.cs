// Echo.cs — the C# echo example (server and client in one program).
//
//   mono Echo.exe server [port]            listens on 127.0.0.1, prints "READY <port> <sha256>",
//                                          echoes every datagram of every session (async, one
//                                          task per session, no thread per session)
//   mono Echo.exe client <url> <sha256>    sends 5 datagrams, prints each echo, closes
//
// Works against examples-c/wtd_echo_server too (same READY line). LD_LIBRARY_PATH (Linux) must
// reach libwtd.so; see bindings/csharp/README.md.
using System;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Wtd;

internal static class Echo
{
    private static int Main(string[] args)
    {
        try
        {
            if (args.Length >= 1 && args[0] == "server")
                return Server(args.Length >= 2 ? ushort.Parse(args[1]) : (ushort)0);
            if (args.Length == 3 && args[0] == "client")
                return Client(args[1], args[2]);
        }
        catch (WtdException e)
        {
            Console.Error.WriteLine("error: " + e.Message);
            return 1;
        }
        Console.Error.WriteLine("usage: Echo.exe server [port] | Echo.exe client <url> <sha256-hex>");
        return 2;
    }

    private static int Server(ushort port)
    {
        using (WtdServer server = WtdServer.Listen(new ServerOptions { Host = "127.0.0.1", Port = port }))
        {
            Console.WriteLine("READY " + server.Port + " " + server.CertificateHashHex);
            Console.Out.Flush();
            while (true)
            {
                WtdSession session = server.AcceptAsync().Result;
                Console.WriteLine("SESSION_OPEN path=" + session.Path);
                Console.Out.Flush();
                Task.Run(() => Serve(session));
            }
        }
    }

    private static async Task Serve(WtdSession session)
    {
        using (session)
        {
            var buffer = new byte[65536]; // one buffer per session, reused for every datagram
            try
            {
                while (true)
                {
                    int n = await session.ReceiveAsync(buffer, 0, buffer.Length);
                    session.TrySend(buffer, 0, n); // a full QUIC buffer drops the echo (WouldBlock)
                }
            }
            catch (WtdException e) when (e.Result == WtdResult.Closed)
            {
                uint code;
                string reason;
                session.TryGetCloseInfo(out code, out reason);
                Console.WriteLine("SESSION_CLOSED code=" + code + " reason=" + reason);
                Console.Out.Flush();
            }
        }
    }

    private static int Client(string url, string hash)
    {
        using (WtdSession session = WtdSession.Connect(url, ClientOptions.PinnedHash(hash)))
        {
            var buffer = new byte[2048];
            for (int i = 0; i < 5; i++)
            {
                byte[] msg = Encoding.UTF8.GetBytes("hello " + i);
                session.Send(msg);
                int n = session.Receive(buffer, 0, buffer.Length, 5000);
                Console.WriteLine("echo: " + Encoding.UTF8.GetString(buffer, 0, n));
            }
            Console.WriteLine("rtt " + session.Stats.RttUs + " us, draft " + WtdLibrary.DraftString(session.Draft));
            session.Close(0, "bye");
        }
        return 0;
    }
}
