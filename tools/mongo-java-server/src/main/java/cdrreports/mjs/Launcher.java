package cdrreports.mjs;

import java.util.List;
import java.util.concurrent.CountDownLatch;

import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;

/**
 * Runs mongo-java-server (memory backend) for the test harness, in the foreground until SIGTERM.
 *
 * <p>Why a launcher: the library ships no command-line server, and by default it reports wire version 8
 * (its {@code ServerVersion.MONGO_5_0}), which current drivers (pymongo 4.20 needs at least 9) refuse.
 * The backend accepts any {@link MongoVersion}; the version only changes what {@code hello},
 * {@code buildInfo} and {@code serverStatus} report, not what the server implements.
 *
 * <p>usage: {@code java -jar launcher.jar [--listen-addr 127.0.0.1:27028] [--version 6.0.0] [--wire-version 17]}
 */
public final class Launcher {

    static {
        // The server logs every connection at INFO; a test run opens thousands. Overridable with -D.
        if (System.getProperty("org.slf4j.simpleLogger.defaultLogLevel") == null) {
            System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        }
        System.setProperty("org.slf4j.simpleLogger.showDateTime", "true");
    }

    /** A server version chosen on the command line (MongoDB 6.0 is wire version 17). */
    private static final class ReportedVersion implements MongoVersion {
        private final List<Integer> versionArray;
        private final int wireVersion;

        ReportedVersion(String version, int wireVersion) {
            String[] parts = version.split("\\.");
            Integer[] numbers = new Integer[] {0, 0, 0, 0};
            for (int i = 0; i < Math.min(parts.length, 3); i++) {
                numbers[i] = Integer.parseInt(parts[i]);
            }
            this.versionArray = List.of(numbers);
            this.wireVersion = wireVersion;
        }

        @Override
        public List<Integer> getVersionArray() {
            return versionArray;
        }

        @Override
        public int getWireVersion() {
            return wireVersion;
        }

        /** "6.0.0" as MongoDB writes it; the interface's default would join all four numbers. */
        @Override
        public String toVersionString() {
            return versionArray.get(0) + "." + versionArray.get(1) + "." + versionArray.get(2);
        }
    }

    private Launcher() {
    }

    public static void main(String[] args) throws InterruptedException {
        String listen = "127.0.0.1:27028";
        String version = "6.0.0";
        int wireVersion = 17;
        for (int i = 0; i < args.length; i++) {
            String value = i + 1 < args.length ? args[i + 1] : null;
            switch (args[i]) {
                case "--listen-addr" -> listen = require(args[i], value);
                case "--version" -> version = require(args[i], value);
                case "--wire-version" -> wireVersion = Integer.parseInt(require(args[i], value));
                default -> usage("unknown argument " + args[i]);
            }
            i++;
        }
        int colon = listen.lastIndexOf(':');
        if (colon < 1) {
            usage("--listen-addr must be host:port");
        }
        String host = listen.substring(0, colon);
        int port = Integer.parseInt(listen.substring(colon + 1));

        MongoVersion reported = new ReportedVersion(version, wireVersion);
        MongoServer server = new MongoServer(new MemoryBackend().version(reported));
        server.bind(host, port);
        System.out.printf("mongo-java-server 1.47.0 (memory backend) listening on %s:%d, reporting MongoDB %s, "
                + "wire version %d%n", host, port, reported.toVersionString(), wireVersion);
        System.out.flush();

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            server.shutdownNow();
            stopped.countDown();
        }, "shutdown"));
        stopped.await();
    }

    private static String require(String flag, String value) {
        if (value == null) {
            usage(flag + " needs a value");
        }
        return value;
    }

    private static void usage(String problem) {
        System.err.println("mongo-java-server launcher: " + problem);
        System.err.println("usage: java -jar launcher.jar [--listen-addr HOST:PORT] [--version X.Y.Z] [--wire-version N]");
        System.exit(2);
    }
}
